"""Embeddings of a dataset (identity folders or list files) as one table, saved as `.npz`.

The file holds `embeddings` (N, D) float32 unit vectors, `paths` and `labels` (identity
names) — the interface other tools read — plus `model`, the model's preprocessing record
as JSON, so a table is never compared with embeddings made by another model or recipe.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facetrain.data.listing import Problems, iter_samples
from facetrain.inference.embedder import FaceEmbedder


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
    workers: int = 0,
) -> Table:  # fmt: skip
    """Embed every image under the roots; images that cannot be used are skipped, with why."""
    problems = Problems()
    samples = list(iter_samples(roots, problems=problems))
    return embed_paths(
        model,
        [s.path for s in samples],
        [s.identity for s in samples],
        align=align,
        device=device,
        progress=progress,
        workers=workers,
    )


def embed_paths(
    model, paths: list[str], labels: list[str], *, align="auto", device="cpu", progress=True,
    workers: int = 0,
) -> Table:  # fmt: skip
    embedder = FaceEmbedder(model, device)
    images = embedder.images(paths, align)
    emb = embedder.embed_source(images, progress="embed" if progress else None, workers=workers)
    good = np.isfinite(emb).all(1) & (emb.shape[1] > 0)  # a width of 0: nothing embedded
    keep = np.flatnonzero(good)
    return Table(
        emb[keep].astype(np.float32),
        [paths[i] for i in keep],
        [labels[i] for i in keep],
        model.source,
        asdict(model.pre),
        {paths[i]: images.problems.get(i, "not embedded") for i in np.flatnonzero(~good)},
    )


def save_table(path: str | os.PathLike, t: Table) -> Path:
    from facetrain import atomic

    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: embeddings are written as .npz")
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
