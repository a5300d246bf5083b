"""The one resumable embedding: long work kept in parts, so a stopped job goes on.

Embedding thousands of faces is a long job on a CPU. Its work is written into a folder,
PART images at a time, each part atomically, beside `work.json` (the model, its
preprocessing, the images and how they are taken): a run stopped, even by kill -9, goes on
from the last part kept, and work of another kind is never mixed in. `embed`, `eval`,
`filter`, `plot-embeddings`, `classify`, `eval-populations`, `library identify` and
distillation's teacher keep their work so (`in_parts` runs it, whatever a part holds); the
folder goes when the output it was for is written (`kept_until_done`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from facetrain.errors import FacetrainError

PART = 512  # images embedded between two records of a resumable embedding
OURS = r"(\.)?(work\.json|part-\d{6}\.npz)(?(1)\..+\.tmp)"  # and atomic writes' temporaries


def in_parts(
    n: int, parts: Path | None, work: dict | None, make: Callable, write: Callable,
    read: Callable, *, progress: bool = True, title: str = "embed",
    starting: Callable | None = None,
) -> Iterator:  # fmt: skip
    """The results of n items' work, in order, as they come, PART items at a time: each
    part's results kept in `parts` (claimed for `work`) as it is done, and read back from
    there on a later run of the same work. `make(ids, advance)` yields the results of
    items `ids` (`advance(k)`: k more done), `write(file, results)` keeps them atomically
    and `read(file, ids)` gives them back; `parts` None keeps nothing. `starting(before,
    n, parts)`, when work is kept and some is left, is told how much was done before."""
    from facetrain.progress import progress_bar

    chunks = [range(k, min(k + PART, n)) for k in range(0, n, PART)]
    files: list = [None] * len(chunks)
    if parts is not None:
        claim(parts, work)
        files = [parts / f"part-{k:06d}.npz" for k in range(len(chunks))]
    before = sum(len(ids) for ids, f in zip(chunks, files) if f is not None and f.exists())
    if parts is not None and before < n and starting is not None:
        starting(before, n, parts)
    with progress_bar(disable=None if progress else True) as bar:
        task = bar.add_task(title, total=n, completed=before)
        for ids, f in zip(chunks, files):
            if f is not None and f.exists():
                kept = _kept(read, f, ids)
                if kept is not None:
                    yield from kept
                    continue
                bar.advance(task, -len(ids))  # counted as done above; done again now
            got = []
            for result in make(ids, lambda k: bar.advance(task, k)):
                got.append(result)
                yield result
            if f is not None:
                write(f, got)


def _kept(read: Callable, f: Path, ids: range) -> list | None:
    """A part's results as kept, or None when its file was cut short or damaged on disk:
    its work is done again, where it had failed every later run with a traceback."""
    try:
        return list(read(f, ids))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None


def embed_in_parts(
    embedder, images, parts: Path, *, align: str = "auto", flip: str | None = None,
    progress: bool = True, workers: int = 0, title: str = "embed",
    starting: Callable | None = None,
) -> tuple[np.ndarray, dict[int, str]]:  # fmt: skip
    """(embeddings, problems by index) of every image of a source (`images`: its `paths`
    name them, its `problems` say why one has no face) by a `FaceEmbedder`, NaN rows where
    an image has no face, kept in `parts` as `in_parts` keeps work (the same model,
    preprocessing, flip, images and alignment: else begun anew)."""
    n, width = images.n_images, embedder.width
    if n == 0:
        return np.zeros((0, width), np.float32), {}

    def make(ids: range, advance: Callable) -> Iterator:
        emb = embedder.embed_source(_Part(images, ids), flip=flip, workers=workers,
                                    progress=advance)  # fmt: skip
        if emb.shape[1] == 0:  # not one face of the part usable: rows of NaN
            emb = np.full((len(ids), width), np.nan, np.float32)
        yield emb, {i: images.problems[i] for i in ids if i in images.problems}

    work = work_of(embedder, images.paths, align, **({"flip": flip} if flip else {}))
    got = list(in_parts(n, parts, work, make, _write_part, _read_part, progress=progress,
                        title=title, starting=starting))  # fmt: skip
    rows = np.concatenate([emb for emb, _ in got])
    return rows, {i: why for _, problems in got for i, why in problems.items()}


def _write_part(path: Path, got: list) -> None:
    from facetrain import atomic

    [(emb, problems)] = got
    with atomic.atomic_open(path, "wb") as out:
        np.savez(out, embeddings=emb, problems=np.array(json.dumps(problems)))


def _read_part(path: Path, ids: range) -> list:
    with np.load(path) as z:  # closed at once: a million faces are two thousand parts
        why = json.loads(str(z["problems"]))
        return [(z["embeddings"], {int(i): w for i, w in why.items()})]


def going_on(before: int, n: int, parts: Path, done: str = "images embedded") -> None:
    """What a command says when it goes on from work kept by an earlier run (`done`: what
    was done to them, in words)."""
    if before:
        from facetrain.progress import console

        console.print(f"going on from an earlier run: {before:,} of {n:,} {done} before, kept in "
                      f"{parts}")  # fmt: skip


def photos_looked_at(before: int, n: int, parts: Path) -> None:
    """`going_on` for work on every face of each photo."""
    going_on(before, n, parts, "photos looked at")


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
    if meta.is_file() and meta.read_bytes() == text.encode():
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


def kept_in_cache(job: str, *inputs) -> Path | None:
    """Where the work of a job whose output has no folder beside it (`eval-populations`,
    `eval` without --out) is kept until it is done: a folder per job and inputs in the
    cache folder's `work/`, never beside the user's photos. None where the cache cannot be
    written: the job then runs without keeping its work."""
    import hashlib

    from facetrain.cache import cache_dir, prune

    key = "\0".join([job, *map(str, inputs)]).encode("utf-8", "surrogateescape")
    parts = cache_dir() / "work" / f"{job}-{hashlib.sha256(key).hexdigest()[:24]}"
    new = not parts.exists()
    try:
        parts.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if new:
        prune(parts.parent, keep=parts)  # work of jobs never taken up again, long unused
    return parts


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
    """Work kept in these folders while a job runs, one job at a time on each (a second is
    refused, naming the first: the one to end first removed the work under the other):
    gone when it ends, done or refused; kept when it is interrupted (Ctrl-C, or kill -9,
    which runs nothing) or the disk fills, for the same job to go on from once there is
    room. None stands for no folder."""
    interrupted = False
    with contextlib.ExitStack() as held:
        for parts in folders:
            if parts is not None:
                held.enter_context(_one_job_on(parts))
        try:
            yield
        except KeyboardInterrupt:
            interrupted = True
            raise
        except OSError as e:
            from facetrain.atomic import no_room

            interrupted = no_room(e)
            raise
        finally:
            if not interrupted:
                for parts in folders:
                    if parts is not None:
                        done_with_parts(parts)


@contextlib.contextmanager
def _one_job_on(parts: Path):
    """The lock beside `parts` held for the block (`facetrain.lock`), and removed after it.
    Where it cannot be made, the job runs unguarded (its output cannot be written there
    either, and says so)."""
    from facetrain.lock import held

    lock = parts.with_name(parts.name + ".lock")
    made = [f for f in (lock.parent, *lock.parent.parents) if not f.exists()]
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError:
        yield
        return
    with held(lock, f"the work kept in {parts}"):
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            for folder in made:  # the folders made for it, when nothing else came to be
                with contextlib.suppress(OSError):
                    folder.rmdir()
