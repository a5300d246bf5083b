"""Naming the faces of new photos (`library identify`): each photo looked at as a scan looks
at it, then its faces named by the library's open-set rule (`Library.namer`).

Looking is the long part (detection, alignment, embedding: seconds a photo on a CPU), so
what is seen is kept PART photos at a time as `inference.parts` keeps work: a run stopped,
even by kill -9, goes on from the last part kept. Naming is quick and always done anew, so
names given between two runs count.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facetrain.inference import parts as kept


def identified(photos: list[str], scanner, namer, *, workers: int = 1,
               progress: bool = True, parts: Path | None = None) -> Iterator[dict]:  # fmt: skip
    """Each photo's answer, in order, as it comes: every face's name (or `unknown`), box
    and score, or why the photo has none."""
    for path, seen in zip(photos, looked_at(photos, scanner, workers=workers,
                                            progress=progress, parts=parts)):  # fmt: skip
        yield _named(path, seen, namer)


def looked_at(photos: list[str], scanner, *, workers: int = 1, progress: bool = True,
              parts: Path | None = None) -> Iterator[tuple]:  # fmt: skip
    """(status, error, faces, (width, height)) of each photo as a scan sees it (`faces`:
    the store's rows, each with its embedding), by `workers` processes started only when
    there is a photo left to look at; kept in `parts` when given."""
    from facetrain.library.scan import analysed, worker_pool

    with contextlib.ExitStack() as stack:
        pool = functools.cache(lambda: stack.enter_context(worker_pool(scanner, workers)))

        def make(ids: range, advance) -> Iterator[tuple]:
            for result in analysed([photos[i] for i in ids], scanner, pool()):
                advance(1)
                yield result[:4]

        work = None if parts is None else kept.work_of(
            scanner.embedder, photos, "scan", gate=asdict(scanner.quality))  # fmt: skip
        yield from kept.in_parts(len(photos), parts, work, make, _write, _read,
                                 progress=progress, title="identify",
                                 starting=kept.photos_looked_at if progress else None)  # fmt: skip


def _named(path: str, seen: tuple, namer) -> dict:
    """One photo's faces (`looked_at`) named by `namer`."""
    status, error, faces, size = seen
    if error and status != "no_face":
        return {"photo": path, "error": error, "faces": [], "rule": namer.rule}
    if not faces:
        return {"photo": path, "faces": [], "rule": namer.rule}
    names = namer.name(np.stack([f["embedding"] for f in faces]))
    out = [{"box": [round(v, 1) for v in f["box"]], "score": f["score"]} | n
           for f, n in zip(faces, names)]  # fmt: skip
    return {"photo": path, "faces": out, "size": list(size), "rule": namer.rule}


def _write(path: Path, seen: list[tuple]) -> None:
    """One part of `looked_at`, atomically: each photo's status, error, size and faces as
    JSON, and the faces' embeddings, in order, as one array."""
    from facetrain import atomic

    rows = [[s, e, list(size), [{k: v for k, v in f.items() if k != "embedding"} for f in faces]]
            for s, e, faces, size in seen]  # fmt: skip
    emb = [f["embedding"] for _, _, faces, _ in seen for f in faces]
    with atomic.atomic_open(path, "wb") as out:
        np.savez(out, photos=np.array(json.dumps(rows, default=lambda v: v.item())),
                 embeddings=np.array(emb, np.float32))  # fmt: skip


def _read(path: Path, ids: range) -> list[tuple]:
    with np.load(path) as z:
        rows, emb = json.loads(str(z["photos"])), iter(z["embeddings"])
    return [(s, e, [f | {"embedding": next(emb)} for f in faces], tuple(size))
            for s, e, size, faces in rows]  # fmt: skip
