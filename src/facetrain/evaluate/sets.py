"""Verification sets: images fetched by index (see inference.feed) with the pairs to compare —
an LFW-format `pairs.txt` over an image folder, or an InsightFace `.bin` — and the pairs
left once unusable images are dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facetrain.evaluate.verification import read_pairs
from facetrain.inference.sources import Images

METRIC_KEYS = ("accuracy", "accuracy_std", "val", "val_std", "far", "auc", "eer", "threshold")


def unreadable_sets(pairs: list[tuple[str, str]], bins: list[str]) -> list[str]:
    """Why verification sets cannot be read, said before any work: a pairs file or .bin
    that is not there, an image folder that is not one (a typo found late costs a model's
    loading, or a training run's first epoch); a pairs file none of whose pairs has its
    images in the folder given."""
    why = [f"{p}: no such pairs file" for p, _ in pairs if not Path(p).is_file()]
    why += [f"{d}: no such image folder" for _, d in pairs if not Path(d).is_dir()]
    for p, d in pairs if not why else []:
        try:
            found = read_pairs(p, d)
        except (OSError, ValueError) as e:
            why.append(str(e))
            continue
        if not len(found.issame):
            more = f", and {len(found.absent) - 1} more" if len(found.absent) > 1 else ""
            why.append(f"{p}: none of its pairs has its images in {d} (not there: "
                       f"{found.absent[0]}{more})")  # fmt: skip
    return why + [f"{b}: no such .bin file" for b in bins if not Path(b).is_file()]


@dataclass
class EvalSet:
    name: str
    n_images: int
    fetch: Callable[[list[int]], list[torch.Tensor]]
    idx1: np.ndarray
    idx2: np.ndarray
    issame: np.ndarray
    fold: np.ndarray | None
    missing: int = 0
    images: Images | None = None  # the photos behind fetch, with their problems
    absent: list[str] = field(default_factory=list)  # images its pairs name, not there

    def missing_note(self) -> str:
        """How many pairs were dropped for images that are not there, and one of those."""
        e = f", e.g. {self.absent[0]}" if self.absent else ""
        return f"{self.missing} pairs name images that are not there{e}"


def pairs_set(
    pairs_file: str,
    images: str,
    max_pairs: int = 0,
    alignment: dict | None = None,
    align: str = "never",
) -> EvalSet:
    """pairs.txt + images; with max_pairs, only the first max_pairs/2 same and different pairs
    of every fold (quick checks during training). Raw photos are aligned with `alignment`
    unless align is `never`."""
    pairs = read_pairs(pairs_file, images)
    keep = np.arange(len(pairs.issame))
    if max_pairs:
        keep = np.array(
            sorted(
                i
                for f in np.unique(pairs.fold)
                for same in (True, False)
                for i in np.flatnonzero((pairs.fold == f) & (pairs.issame == same))[
                    : max_pairs // 2
                ]
            ),
            dtype=np.int64,
        )
    p1 = [pairs.path1[i] for i in keep]
    p2 = [pairs.path2[i] for i in keep]
    uniq = sorted(set(p1) | set(p2))
    pos = {p: i for i, p in enumerate(uniq)}
    source = Images(uniq, alignment, align)
    name = Path(pairs_file).parent.name or "pairs"
    return EvalSet(
        name,
        len(uniq),
        source.fetch,
        np.array([pos[p] for p in p1], dtype=np.int64),
        np.array([pos[p] for p in p2], dtype=np.int64),
        pairs.issame[keep],
        pairs.fold[keep],
        len(pairs.missing),
        source,
        pairs.absent,
    )


def bin_set(path: str) -> EvalSet:
    from torchvision.io import ImageReadMode, decode_image

    from facetrain.data.recordio import load_bin

    images, issame = load_bin(path)

    def fetch(ids):
        return [
            decode_image(
                torch.frombuffer(bytearray(images[i]), dtype=torch.uint8), ImageReadMode.RGB
            )
            for i in ids
        ]

    n = len(issame)
    return EvalSet(
        Path(path).stem,
        len(images),
        fetch,
        np.arange(0, 2 * n, 2),
        np.arange(1, 2 * n, 2),
        issame,
        None,
    )


def usable_pairs(s: EvalSet, emb: np.ndarray) -> tuple[EvalSet, int]:
    """The set without pairs whose images could not be embedded, and how many were dropped."""
    good = np.isfinite(emb).all(1)
    keep = good[s.idx1] & good[s.idx2]
    dropped = int((~keep).sum())
    if not dropped:
        return s, 0
    fold = None if s.fold is None else s.fold[keep]
    kept = (s.idx1[keep], s.idx2[keep], s.issame[keep], fold, s.missing + dropped)
    return EvalSet(s.name, s.n_images, s.fetch, *kept, s.images, s.absent), dropped
