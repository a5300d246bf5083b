"""A teacher's embedding of every training face, computed once and kept in the run folder.

Distillation (`--loss distill --set teacher=MODEL`) trains a student to reproduce these. The
teacher sees each face in its own preprocessing, from the same stored image the student
sees in its own: a standard 112x112 crop is re-warped into the teacher's geometry (dlib's
chip, say), a face already of the teacher's size is taken as it is, anything else is
detected and aligned the teacher's way; then the teacher's normalisation, input size and
flip. The work is kept in `RUN/teacher/` by the one resumable embedding
(`inference.parts`), so a killed run continues where it stopped and computes
nothing twice. A face the teacher cannot use (no face found) gets a NaN row, which the loss
leaves out.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facetrain.data.packed import PackedDataset
from facetrain.errors import FacetrainError

# what facetrain before the one resumable embedding kept there: made again, never refused
EARLIER = r"meta\.json|part-\d{5}\.npy"


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
    from facetrain.inference.embedder import FaceEmbedder
    from facetrain.inference.parts import embed_in_parts

    folder = run / "teacher"
    embedder = FaceEmbedder(open_teacher(spec, device), device)
    images = embedder.images(ds.source_paths(), "auto", read=ds.rgb)
    _forget_earlier(folder)

    def starting(before: int, n: int, parts: Path) -> None:
        log(f"teacher {spec}: embedding {n:,} faces once ({before:,} done before) into {parts}")

    try:
        emb, _ = embed_in_parts(embedder, images, folder, starting=starting)
    except FacetrainError as e:  # a folder there that is not such work
        raise FacetrainError(f"teacher {spec}: {e}") from None
    return emb


def _forget_earlier(folder: Path) -> None:
    """A teacher folder in the earlier layout is emptied, to be made again in this one."""
    found = list(folder.iterdir()) if folder.is_dir() else []
    if found and all(re.fullmatch(EARLIER, p.name) for p in found):
        for p in found:
            p.unlink()
