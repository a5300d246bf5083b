"""Prune small identities and split train/val — as list files, never moving a photo.

Both are deterministic for a seed and stream the dataset twice (count, then write), holding
only per-identity counts and 12 bytes per image, so they scale to millions of images.

Splits:
- `identity`: whole identities go to val (for verification-style validation on unseen
  people). The val identities are the `fraction` with the smallest seeded hash.
- `image`: within each identity (FaceNet's `validation_set_split_ratio`): the identity keeps
  at least `min_train` images in train and gives round(n * fraction) to val — or none when
  that is fewer than `min_val` (FaceNet's `min_nrof_val_images_per_class`). Identities too
  small to give anything stay wholly in train (FaceNet drops some of them; dropping data
  silently is worse).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrain import atomic
from facetrain.data.listing import (
    DatasetError,
    Problems,
    check_listable,
    iter_samples,
    parse_roots,
    roots_said,
    write_list,
)

SPLIT_MODES = ("identity", "image")


def _unit_hash(seed: int, text: str) -> float:
    d = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "little") / 2.0**64


def identity_counts(roots, *, merge_same_names: bool = False, problems=None) -> Counter:
    counts: Counter = Counter()
    for s in iter_samples(roots, merge_same_names=merge_same_names, problems=problems):
        counts[s.identity] += 1
    return counts


def prune(roots, out: str | os.PathLike, min_images: int, *, merge_same_names=False) -> dict:
    """Write a list of the samples whose identity has at least `min_images` images."""
    counts = identity_counts(roots, merge_same_names=merge_same_names)
    keep = {k for k, v in counts.items() if v >= min_images}
    if not keep:  # an empty list that split and pack would refuse later, further from why
        most = f"the most has {max(counts.values()):,}" if counts else "it holds no images"
        raise DatasetError(f"{roots_said(roots)}: no identity has {min_images:,} images or more "
                           f"({most}); nothing written")  # fmt: skip
    samples = iter_samples(roots, merge_same_names=merge_same_names, problems=Problems())
    n = write_list(out, (s for s in samples if s.identity in keep))
    return {
        "identities_in": len(counts),
        "images_in": sum(counts.values()),
        "identities_kept": len(keep),
        "images_kept": n,
        "list": str(out),
    }


@dataclass
class SplitResult:
    train_images: int
    val_images: int
    train_identities: int
    val_identities: int
    train_list: str
    val_list: str


def split(
    roots,
    out_dir: str | os.PathLike,
    *,
    by: str = "identity",
    fraction: float = 0.1,
    min_train: int = 1,
    min_val: int = 0,
    seed: int = 0,
    merge_same_names: bool = False,
) -> SplitResult:
    """Write OUT/train.txt and OUT/val.txt: every image's side decided by seeded hashes of
    names (the same listing and seed, the same split), then the listing read again."""
    if by not in SPLIT_MODES:
        raise ValueError(f"unknown split {by!r}; choose from {', '.join(SPLIT_MODES)}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    if min(min_train, min_val) < 0:
        raise ValueError(f"--min-train {min_train}, --min-val {min_val}: numbers of images ≥ 0")

    def samples():
        return iter_samples(roots, merge_same_names=merge_same_names, problems=Problems())

    names, ident, u = _hashed(samples(), seed)  # before anything is written
    if not names:  # (two empty lists, which pack refuses later)
        raise DatasetError(f"{roots_said(roots)}: no images to split (a folder per person, of "
                           "photos, or a list)")  # fmt: skip
    if by == "identity":
        is_val = _val_identities(names, seed, fraction)[ident]
    else:
        is_val = _val_images(ident, u, len(names), fraction, min_train, min_val)
    out_dir = Path(out_dir)
    atomic.output_folder(out_dir, inputs=parse_roots(roots), own=("train.txt", "val.txt"),
                         kind="split")  # fmt: skip

    def pick(want_val: bool):
        for i, s in enumerate(samples()):
            if bool(is_val[i]) == want_val:
                yield s

    n_train = write_list(out_dir / "train.txt", pick(False))
    n_val = write_list(out_dir / "val.txt", pick(True))
    return SplitResult(
        train_images=n_train,
        val_images=n_val,
        train_identities=int(len(np.unique(ident[~is_val]))),
        val_identities=int(len(np.unique(ident[is_val]))),
        train_list=str(out_dir / "train.txt"),
        val_list=str(out_dir / "val.txt"),
    )


def _hashed(samples, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(identity names, each image's identity index, each image's seeded hash in [0, 1)):
    12 bytes an image, built in blocks."""
    ids: dict[str, int] = {}
    idx_parts, u_parts, idx_buf, u_buf = [], [], [], []
    for s in map(check_listable, samples):
        idx_buf.append(ids.setdefault(s.identity, len(ids)))
        u_buf.append(_unit_hash(seed, f"{s.identity}\0{s.name}"))
        if len(idx_buf) >= 65536:
            idx_parts.append(np.array(idx_buf, np.int32))
            u_parts.append(np.array(u_buf, np.float64))
            idx_buf, u_buf = [], []
    idx_parts.append(np.array(idx_buf, np.int32))
    u_parts.append(np.array(u_buf, np.float64))
    return list(ids), np.concatenate(idx_parts), np.concatenate(u_parts)


def _val_identities(names: list[str], seed: int, fraction: float) -> np.ndarray:
    """Which identities go to val: the `fraction` with the smallest hashes of their names."""
    id_u = np.array([_unit_hash(seed, name) for name in names])
    val = np.zeros(len(names), bool)
    val[np.argsort(id_u, kind="stable")[: int(round(len(names) * fraction))]] = True
    return val


def _val_images(ident: np.ndarray, u: np.ndarray, n_ids: int, fraction: float,
                min_train: int, min_val: int) -> np.ndarray:  # fmt: skip
    """Which images go to val: each identity's `fraction` with the smallest hashes, leaving
    it `min_train` images, and none when fewer than `min_val` would go."""
    counts = np.bincount(ident, minlength=n_ids)
    quota = np.rint(counts * fraction).astype(np.int64)
    quota = np.minimum(quota, counts - min_train).clip(min=0)
    quota[quota < min_val] = 0
    # rank of each image within its identity by hash; the `quota` smallest go to val
    order = np.lexsort((u, ident))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(ident), np.int64)
    rank[order] = np.arange(len(ident)) - first[ident[order]]
    return rank < quota[ident]


def stats(roots, *, merge_same_names: bool = False, check: bool = False) -> dict:
    """Identities, images, images-per-identity histogram and problems of a dataset (or of a
    pack, with its splits); with `check`, every image decoded, and the sizes they have (are
    they aligned faces yet?)."""
    from facetrain.data.packed import pack_of

    pack = pack_of(roots)
    if pack is not None:
        size = pack.meta.get("image_size")
        return _summary(Counter(pack.identity_names()), Problems()) | {
            "splits": pack.meta["splits"],
            "sizes": {f"{size[0]}x{size[1]}": len(pack)} if size else {},
        }
    from facetrain.progress import progress_bar

    problems = Problems()
    counts: Counter = Counter()
    sizes: Counter = Counter()
    listed = functools.partial(iter_samples, roots, merge_same_names=merge_same_names)
    with progress_bar(disable=None if check else True) as bar:  # decoding: hours for millions
        total = sum(1 for _ in listed(problems=Problems())) if check else None  # a listing
        task = bar.add_task("check", total=total)
        for s in listed(problems=problems):
            bar.advance(task)
            if _usable(s.path, problems, sizes if check else None):
                counts[s.identity] += 1
    return _summary(counts, problems) | ({"sizes": dict(sizes.most_common())} if check else {})


def _usable(path: str, problems: Problems, sizes: Counter | None) -> bool:
    """Whether an image counts: not empty, readable, and (`sizes` given: checking) decoded,
    its size counted."""
    from facetrain.data.images import ImageError, load_rgb

    try:
        if os.path.getsize(path) == 0:
            problems.add("empty_file", path)
            return False
    except OSError:
        problems.add("unreadable", path)
        return False
    if sizes is not None:
        try:
            h, w = load_rgb(path).shape[:2]
        except ImageError as e:
            problems.add(e.status, f"{path} ({e.reason})")
            return False
        sizes[f"{w}x{h}"] += 1
    return True


def _summary(counts: Counter, problems: Problems) -> dict:
    """Images per identity (their spread and histogram) and the problems met."""
    per_id = np.array(list(counts.values()), np.int64) if counts else np.zeros(0, np.int64)
    edges = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000]
    hist = {}
    for lo, hi in zip(edges, [*edges[1:], None]):
        label = f"{lo}" if hi == lo + 1 else (f"{lo}-{hi - 1}" if hi else f"{lo}+")
        sel = per_id >= lo if hi is None else (per_id >= lo) & (per_id < hi)
        hist[label] = int(sel.sum())
    return {
        "identities": len(counts),
        "images": int(per_id.sum()),
        "images_per_identity": {
            "min": int(per_id.min()) if len(per_id) else 0,
            "median": float(np.median(per_id)) if len(per_id) else 0.0,
            "mean": round(float(per_id.mean()), 2) if len(per_id) else 0.0,
            "max": int(per_id.max()) if len(per_id) else 0,
        },
        "histogram": hist,
        "problems": dict(problems.counts),
        "problem_examples": problems.examples,
    }
