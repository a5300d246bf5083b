"""Embeddings of a dataset (identity folders or list files) as one table, saved as `.npz`.

The file holds `embeddings` (N, D) float32 unit vectors, `paths` and `labels` (identity
names) — the interface other tools read — plus `model`, the model's preprocessing record
as JSON, so a table is never compared with embeddings made by another model or recipe.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facetrain.data.listing import Problems, iter_samples
from facetrain.inference import parts as kept
from facetrain.inference.embedder import FaceEmbedder
from facetrain.inference.sources import read_ahead, reading_threads

# Photos whose faces are embedded in one batch: one at a time, a trained network on a CPU
# read 35 aligned faces/s, 32 at a time 148 (bench/photo_batches.py)
PHOTOS_AT_ONCE = 32
NO_FACE = "no face found"  # a photo read, and no face in it (not an error of the file)


@dataclass
class Table:
    embeddings: np.ndarray
    paths: list[str]
    labels: list[str]
    model: str = ""
    preprocess: dict = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason

    def __len__(self) -> int:
        return len(self.paths)


def embed_dataset(
    model, roots, *, align: str = "auto", device: str = "cpu", progress: bool = True,
    workers: int = 0, parts: Path | None = None, identities: int | None = None,
) -> Table:  # fmt: skip
    """Embed every image under the roots, or of a pack (`facetrain pack`'s folder, from its
    shards: the photos may be elsewhere by now); images that cannot be used are skipped,
    with why. With `identities`, only the images of the first that many by name (a map of
    some of them need not embed a million faces)."""
    from facetrain.data.packed import pack_of

    pack = pack_of(roots)
    if pack is not None:
        paths, names, read = pack.source_paths(), pack.identity_names(), pack.rgb
    else:
        samples = list(iter_samples(roots, problems=Problems()))
        paths, names, read = [s.path for s in samples], [s.identity for s in samples], None
    if identities is not None:
        chosen = set(sorted(set(names))[:identities])
        idx = [i for i, n in enumerate(names) if n in chosen]
        paths, names = [paths[i] for i in idx], [names[i] for i in idx]
        read = read and (lambda i, whole=read: whole(idx[i]))
    return embed_paths(model, paths, names, align=align, device=device, progress=progress,
                       workers=workers, read=read, parts=parts)  # fmt: skip


def embed_paths(
    model, paths: list[str], labels: list[str], *, align="auto", device="cpu", progress=True,
    workers: int = 0, read=None, parts: Path | None = None,
) -> Table:  # fmt: skip
    """Embed these photos (or `read(i)`'s pixels, paths[i] naming them). With `parts`, a
    folder, the work is kept there PART images at a time, so that a run stopped (even by
    kill -9) goes on from the last part kept; the caller removes it when the table is no
    longer wanted from it, saved or refused (`inference.parts.kept_until_done`)."""
    embedder = FaceEmbedder(model, device)
    images = embedder.images(paths, align, read)
    if parts is None:
        bar = "embed" if progress else None
        emb = embedder.embed_source(images, progress=bar, workers=workers)
        problems = images.problems
    else:
        said = kept.going_on if progress else None
        emb, problems = kept.embed_in_parts(embedder, images, parts, align=align,
                                            progress=progress, workers=workers,
                                            starting=said)  # fmt: skip
    good = np.isfinite(emb).all(1) & (emb.shape[1] > 0)  # a width of 0: nothing embedded
    keep = np.flatnonzero(good)
    return Table(
        emb[keep].astype(np.float32),
        [paths[i] for i in keep],
        [labels[i] for i in keep],
        model.source,
        asdict(model.pre),
        {paths[i]: problems.get(i, "not embedded") for i in np.flatnonzero(~good)},
    )


def check_table_path(path: str | os.PathLike) -> None:
    """ValueError unless a table can be written at `path` (said before any embedding)."""
    if Path(path).suffix != ".npz":
        raise ValueError(f"{path}: embeddings are written as .npz")


def save_table(path: str | os.PathLike, t: Table) -> Path:
    from facetrain import atomic

    path = Path(path)
    check_table_path(path)
    with atomic.atomic_open(path, "wb") as f:
        np.savez(
            f,
            embeddings=t.embeddings,
            paths=np.array(t.paths, dtype=str),
            labels=np.array(t.labels, dtype=str),
            model=np.array(t.model),
            preprocess=np.array(json.dumps(t.preprocess)),
        )
    return path


@dataclass
class PhotoFaces:
    """Every face of one photo: `boxes[k]` (x1, y1, x2, y2, or None for an image taken
    whole) and `embeddings[k]`; `error` says why the photo gave none."""

    path: str
    boxes: list
    embeddings: np.ndarray
    error: str | None = None


def faces_in_photos(
    model, paths: list[str], *, align: str = "auto", device: str = "cpu", progress: bool = True,
    parts: Path | None = None,
) -> list[PhotoFaces]:  # fmt: skip
    """Each photo's faces, all of them: what answers every face of a group photo (see
    `iter_faces_in_photos`)."""
    return list(iter_faces_in_photos(model, paths, align=align, device=device,
                                     progress=progress, parts=parts))  # fmt: skip


def iter_faces_in_photos(
    model, paths: list[str], *, align: str = "auto", device: str = "cpu", progress: bool = True,
    parts: Path | None = None,
) -> Iterator[PhotoFaces]:  # fmt: skip
    """Each photo's faces, PHOTOS_AT_ONCE photos at a time as they are found, so a caller
    answers as it goes. With `parts`, a folder, the work is kept there PART photos at a time, as
    `embed_paths` keeps its own: a run stopped (even by kill -9) goes on from the last part
    kept, and the photos of the parts kept come first, read back. The photos are read on as
    many threads as the model runs on (`reading_threads`)."""
    from facetrain.data.images import load_rgb

    embedder, threads = FaceEmbedder(model, device), reading_threads(0)

    def make(ids: range, advance) -> Iterator[PhotoFaces]:
        for k in range(0, len(ids), PHOTOS_AT_ONCE):
            group = ids[k : k + PHOTOS_AT_ONCE]
            photos = every_face(embedder, load_rgb, [paths[i] for i in group], align, threads)
            advance(len(group))
            yield from photos

    work = None if parts is None else kept.work_of(embedder, paths, align, faces="every")
    yield from kept.in_parts(len(paths), parts, work, make, _write_faces,
                             lambda f, ids: _read_faces(f, [paths[i] for i in ids]),
                             progress=progress, title="faces",
                             starting=kept.photos_looked_at if progress else None)  # fmt: skip


def _write_faces(path: Path, photos: list[PhotoFaces]) -> None:
    """One part of `faces_in_photos`: each photo's number of faces, their boxes (NaN: an
    image taken whole), embeddings and the photo's error, written atomically."""
    from facetrain import atomic

    boxes = [np.full(4, np.nan) if b is None else np.asarray(b, float)
             for p in photos for b in p.boxes]  # fmt: skip
    width = photos[0].embeddings.shape[1]
    with atomic.atomic_open(path, "wb") as f:
        np.savez(f, counts=np.array([len(p.boxes) for p in photos], np.int64),
                 boxes=np.array(boxes, float).reshape(-1, 4),
                 embeddings=np.concatenate([p.embeddings for p in photos]).reshape(-1, width),
                 errors=np.array(json.dumps([p.error for p in photos])))  # fmt: skip


def _read_faces(path: Path, paths: list[str]) -> list[PhotoFaces]:
    with np.load(path) as z:
        counts, boxes, emb = z["counts"], z["boxes"], z["embeddings"]
        errors = json.loads(str(z["errors"]))
    ends = np.cumsum(counts)
    return [PhotoFaces(p, [None if np.isnan(b).any() else b for b in boxes[e - n : e]],
                       emb[e - n : e], why)
            for p, n, e, why in zip(paths, counts.tolist(), ends.tolist(), errors)]  # fmt: skip


def every_face(embedder: FaceEmbedder, load, images: list, align: str = "auto",
               threads: int = 0) -> list[PhotoFaces]:  # fmt: skip
    """Each face of each image (`load(image)`: its RGB array; an aligned face is itself),
    read by `threads` threads (0: this one), embedded in one batch; an image that cannot be
    read has none and says why."""
    from facetrain.data.images import ImageError

    def crops_of(image) -> tuple[list, str | None]:
        try:
            got = embedder.every_crop(load(image), align)
            return got, None if got else NO_FACE
        except (ImageError, OSError, ValueError, TypeError) as e:
            return [], str(e) or type(e).__name__

    read = list(read_ahead(crops_of, list(images), threads))
    found, why = [f for f, _ in read], [w for _, w in read]
    crops = [c for f in found for _, c in f]
    emb = iter(embedder.embed_crops(crops) if crops else [])
    return [PhotoFaces(str(image) if isinstance(image, str | os.PathLike) else "",
                       [b for b, _ in f],
                       np.array([next(emb) for _ in f], np.float32).reshape(-1, embedder.width),
                       w) for image, f, w in zip(images, found, why)]  # fmt: skip


def photo_table(model, photos: list[PhotoFaces], labels: list[str]) -> tuple[Table, list]:
    """Photos holding one face as a table (the others in `skipped`, with why), and the
    group photos apart as (PhotoFaces, label): which face is the person is the caller's
    decision, never the detector's guess."""
    one = [(p, lab) for p, lab in zip(photos, labels) if len(p.boxes) == 1]
    emb = [p.embeddings[0] for p, _ in one]
    emb = np.stack(emb) if one else np.zeros((0, FaceEmbedder(model).width))
    skipped = {p.path: p.error for p in photos if p.error}
    table = Table(emb.astype(np.float32), [p.path for p, _ in one], [lab for _, lab in one],
                  model.source, asdict(model.pre), skipped)  # fmt: skip
    return table, [(p, lab) for p, lab in zip(photos, labels) if len(p.boxes) > 1]
