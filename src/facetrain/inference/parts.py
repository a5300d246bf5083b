"""The one resumable embedding: long work kept in parts, so a stopped job goes on.

Embedding thousands of faces is a long job on a CPU. Its work is written into a folder,
PART images at a time, each part atomically, beside `work.json` (the model, its
preprocessing, the images and how they are taken): a run stopped, even by kill -9, goes on
from the last part kept, and work of another kind is never mixed in. `embed`, `eval`,
`filter`, `plot-embeddings`, `classify` and distillation's teacher keep their work so; the
folder goes when the output it was for is written (`kept_until_done`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facetrain.errors import FacetrainError

PART = 512  # images embedded between two records of a resumable embedding
OURS = r"(\.)?(work\.json|part-\d{6}\.npz)(?(1)\..+\.tmp)"  # and atomic writes' temporaries


def embed_in_parts(
    embedder, images, parts: Path, *, align: str = "auto", flip: str | None = None,
    progress: bool = True, workers: int = 0, title: str = "embed",
    starting: Callable | None = None,
) -> tuple[np.ndarray, dict[int, str]]:  # fmt: skip
    """(embeddings, problems by index) of every image of a source (`images`: its `paths`
    name them, its `problems` say why one has no face) by a `FaceEmbedder`, NaN rows where
    an image has no face, PART at a time: each part written into `parts` as it is done and
    read back from there on a later run of the same work (the same model, preprocessing,
    flip, images and alignment: else begun anew). `starting(before, n, parts)`, when there
    is work left, is told how many of the n images were embedded before."""
    from facetrain import atomic
    from facetrain.progress import progress_bar

    n = images.n_images
    if n == 0:
        return np.zeros((0, embedder.width), np.float32), {}
    files = [parts / f"part-{k:06d}.npz" for k in range(-(-n // PART))]
    claim(parts, work_of(embedder, images.paths, align, **({"flip": flip} if flip else {})))
    before = min(sum(f.exists() for f in files) * PART, n)  # parts are made in order
    if before < n and starting is not None:
        starting(before, n, parts)
    with progress_bar(disable=None if progress else True) as bar:
        task = bar.add_task(title, total=n, completed=before)
        for k, f in enumerate(files):
            if f.exists():
                continue
            ids = range(k * PART, min((k + 1) * PART, n))
            emb = embedder.embed_source(_Part(images, ids), flip=flip, workers=workers,
                                        progress=lambda read: bar.advance(task, read))  # fmt: skip
            if emb.shape[1] == 0:  # not one face of the part usable: rows of NaN
                emb = np.full((len(ids), embedder.width), np.nan, np.float32)
            why = json.dumps({i: images.problems[i] for i in ids if i in images.problems})
            with atomic.atomic_open(f, "wb") as out:
                np.savez(out, embeddings=emb, problems=np.array(why))
    return _read_parts(files, embedder.width)


def _read_parts(files: list[Path], width: int) -> tuple[np.ndarray, dict[int, str]]:
    rows, problems = [np.zeros((0, width), np.float32)], {}
    for f in files:  # each closed at once: a million faces are two thousand parts
        with np.load(f) as z:
            rows.append(z["embeddings"])
            problems |= {int(i): why for i, why in json.loads(str(z["problems"])).items()}
    return np.concatenate(rows), problems


def going_on(before: int, n: int, parts: Path) -> None:
    """What a command says when it goes on from work kept by an earlier run."""
    if before:
        from facetrain.progress import console

        console.print(f"going on from an earlier run: {before} of {n} images embedded before, "
                      f"kept in {parts}")  # fmt: skip


class _Part:
    """Some images of a source, by their own indices (a part of a resumable embedding)."""

    def __init__(self, source, ids: range):
        self.source, self.ids = source, ids

    @property
    def n_images(self) -> int:
        return len(self.ids)

    def arrays(self, ids: list[int]) -> list:
        return self.source.arrays([self.ids[i] for i in ids])

    def fetch(self, ids: list[int]) -> list:
        return self.source.fetch([self.ids[i] for i in ids])


def work_of(embedder, paths: list[str], align: str, **more) -> dict:
    """What a piece of kept work is: the model, its preprocessing, the images and how they
    are taken (and `more`); work kept under another record is begun anew (`claim`)."""
    from dataclasses import asdict

    from facetrain.inference.compiled import model_hash

    return {"model": model_hash(embedder.model), "pre": asdict(embedder.pre), "align": align,
            "images": digest(paths)} | more  # fmt: skip


def digest(paths: list[str]) -> str:
    """A short fingerprint of these image names, in this order."""
    import hashlib

    return hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest()


def claim(parts: Path, work: dict) -> None:
    """`parts` holds this work's parts: kept when they are of the same work, else emptied
    (parts of other faces or another model are never mixed in). A folder there that is
    not such work is nobody's to empty: FacetrainError."""
    import shutil

    from facetrain import atomic

    meta, text = parts / "work.json", json.dumps(work, sort_keys=True) + "\n"
    if meta.is_file() and meta.read_text() == text:
        return
    if parts.exists():
        if not _ours(parts):
            raise FacetrainError(f"{parts}: in the way of the work kept towards the output, "
                                 "and not such work; move it, or write the output "
                                 "elsewhere")  # fmt: skip
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    atomic.write_text(meta, text)


def parts_for(out: str | os.PathLike) -> Path:
    """Where the work towards the output file `out` is kept until it is written."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _ours(parts: Path) -> bool:
    """A folder of embedding work and nothing else."""
    return parts.is_dir() and all(re.fullmatch(OURS, p.name) for p in parts.iterdir())


def done_with_parts(parts: Path) -> None:
    """The work kept towards an output goes (the output is written, or refused): a folder
    holding anything else there is left as it is."""
    import shutil

    if _ours(parts):
        shutil.rmtree(parts, ignore_errors=True)


@contextlib.contextmanager
def kept_until_done(*folders: Path | None):
    """Work kept in these folders while a job runs: gone when it ends, done or refused;
    kept when it is interrupted (Ctrl-C, or kill -9, which runs nothing), for the same job
    to go on from. None stands for no folder."""
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if not interrupted:
            for parts in folders:
                if parts is not None:
                    done_with_parts(parts)
