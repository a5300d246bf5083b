"""A teacher's embedding of every training face, computed once and kept in the run folder.

Distillation (`--loss distill --set teacher=MODEL`) trains a student to reproduce these. The
teacher sees each face in its own preprocessing, from the same stored image the student
sees in its own: a standard 112x112 crop is re-warped into the teacher's geometry (dlib's
chip, say), a face already of the teacher's size is taken as it is, anything else is
detected and aligned the teacher's way; then the teacher's normalisation, input size and
flip. The embeddings are written in parts of `CHUNK` faces (`RUN/teacher/part-NNNNN.npy`,
each atomically), so a killed run continues where it stopped and computes nothing twice.
A face the teacher cannot use (no face found) gets a NaN row, which the loss leaves out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facetrain import atomic
from facetrain.data.packed import PackedDataset
from facetrain.errors import FacetrainError

CHUNK = 1024


def open_teacher(spec: str, device: str = "cpu"):
    """The teacher model, or a clear error: any MODEL facetrain can open, with a record."""
    from facetrain.inference.saved import open_model

    try:
        return open_model(spec, device)
    except FacetrainError as e:
        raise FacetrainError(f"teacher {spec}: {e}") from None


def teacher_embeddings(spec: str, ds: PackedDataset, run: Path, device: str = "cpu",
                       log=print) -> np.ndarray:  # fmt: skip
    """(N, D) float32 unit embeddings of the pack's training faces by the teacher."""
    folder = run / "teacher"
    fm = open_teacher(spec, device)
    meta = {"teacher": spec, "source": fm.source, "faces": len(ds), "record": fm.pre.model}
    _check_meta(folder, meta)
    parts = [folder / f"part-{k:05d}.npy" for k in range(-(-len(ds) // CHUNK))]
    todo = [k for k, p in enumerate(parts) if not p.exists()]
    if todo:
        log(f"teacher {spec}: embedding {len(ds)} faces once ({len(parts) - len(todo)} of "
            f"{len(parts)} parts done before) into {folder}")  # fmt: skip
    for k in todo:
        ids = list(range(k * CHUNK, min((k + 1) * CHUNK, len(ds))))
        with atomic.atomic_open(parts[k], "wb") as f:
            np.save(f, _embed(fm, ds, ids, device))
    return np.concatenate([np.load(p) for p in parts]) if parts else np.zeros((0, 0), np.float32)


def _check_meta(folder: Path, meta: dict) -> None:
    path = folder / "meta.json"
    if path.exists():
        if json.loads(path.read_text()) != meta:
            raise FacetrainError(
                f"{folder} holds another teacher's embeddings ({path}); use a new run folder"
            )
        return
    atomic.write_text(path, json.dumps(meta, indent=2) + "\n")


def _embed(fm, ds: PackedDataset, ids: list[int], device: str) -> np.ndarray:
    from facetrain.inference.embedder import FaceEmbedder

    images = ds.batch(ids)[0].permute(0, 2, 3, 1).numpy()
    return FaceEmbedder(fm, device).embed(list(images), "auto")
