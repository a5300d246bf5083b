"""Image sets and how a model embeds them — shared by training, `eval`, `embed` and the rest.

`Images` fetches photos by index (uint8, CHW), aligning raw photos on the fly with the
model's own alignment record; an `EvalSet` adds pairs: an LFW-format `pairs.txt` over an
image folder, or an InsightFace `.bin`. Embeddings add (or concatenate) the flipped image's
embedding, as FaceNet's and InsightFace's evaluations do. An image that cannot be used
(unreadable, no face) gets a NaN row and a reason, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facetrain.data.augment import Augment, center
from facetrain.evaluate.verification import evaluate, read_pairs

FLIPS = ("sum", "concat", "none")
METRIC_KEYS = ("accuracy", "accuracy_std", "val", "val_std", "far", "auc", "eer", "threshold")


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def prepare(x_uint8: torch.Tensor, *, size: int, normalize: str, crop: int | None = None):
    """A model's evaluation input: centre crop (if it trained on crops), normalize, resize."""
    return resize(center(x_uint8, Augment(flip=False, crop=crop, normalize=normalize)), size)


ALIGN_MODES = ("auto", "always", "never")


def face_crop(img: np.ndarray, aligner: Callable, align: str = "auto") -> np.ndarray | None:
    """The model's face of one RGB image, or None when no face is found. `never`: the image
    as it is; `auto`: an image of the model's aligned size as it is, a standard 112x112
    crop re-warped into the model's geometry, anything else detected and aligned (the face
    nearest the centre); `always`: detected and aligned. `aligner()` gives the FaceAligner
    (made only when needed: MTCNN takes a moment to load)."""
    if align == "never" or (align == "auto" and aligner().is_aligned(img)):
        return img
    if align == "auto" and aligner().is_standard_crop(img):
        return aligner().rewarp(img)
    faces = aligner().faces(img, select="center")
    return faces[0].crop if faces else None


class Images:
    """Photos by index. align: `auto` aligns photos that are not already the model's aligned
    size, `always` aligns every photo, `never` takes them as they are."""

    def __init__(self, paths: list[str], alignment: dict | None = None, align: str = "auto"):
        if align not in ALIGN_MODES:
            raise ValueError(f"unknown align mode {align!r}; choose from {', '.join(ALIGN_MODES)}")
        self.paths = list(paths)
        self.alignment = alignment or {"mode": "similarity", "size": 112}
        self.align = align
        self.problems: dict[int, str] = {}
        self._aligner = None

    @property
    def n_images(self) -> int:
        return len(self.paths)

    def aligner(self):
        if self._aligner is None:
            from facetrain.align.faces import FaceAligner

            self._aligner = FaceAligner(self.alignment)
        return self._aligner

    def load(self, i: int) -> np.ndarray | None:
        """HxWx3 uint8 face i, or None with the reason in `problems`."""
        from facetrain.data.images import ImageError, load_rgb

        try:
            img = load_rgb(self.paths[i])
        except ImageError as e:
            self.problems[i] = f"{e.status}: {e.reason}"
            return None
        except OSError as e:
            self.problems[i] = f"unreadable: {e}"
            return None
        crop = face_crop(img, self.aligner, self.align)
        if crop is None:
            self.problems[i] = "no_face: no face above the detector thresholds"
        return crop

    def fetch(self, ids: list[int]) -> list[torch.Tensor | None]:
        imgs = [self.load(i) for i in ids]
        return [None if a is None else torch.from_numpy(a).permute(2, 0, 1) for a in imgs]


class Arrays:
    """Faces already in memory (HxWx3 uint8, e.g. aligned on the fly), for `embed`."""

    def __init__(self, faces: list[np.ndarray]):
        self.faces = faces

    @property
    def n_images(self) -> int:
        return len(self.faces)

    def fetch(self, ids: list[int]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(self.faces[i])).permute(2, 0, 1) for i in ids]


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


@torch.no_grad()
def embed(
    model,
    s: EvalSet | Images,
    *,
    size: int,
    normalize: str,
    crop: int | None = None,
    flip: str = "sum",
    device: str = "cpu",
    batch: int = 128,
    progress: str | None = None,
) -> np.ndarray:
    """Unit embeddings of every image of the set (flip: sum, concat or none); rows of images
    that could not be used are NaN. With `progress`, a bar with that title."""
    from facetrain.progress import progress_bar

    if flip not in FLIPS:
        raise ValueError(f"unknown flip {flip!r}; choose from {', '.join(FLIPS)}")
    model.eval()
    out = []
    with progress_bar(disable=None if progress else True) as bar:
        task = bar.add_task(progress or "embed", total=s.n_images, rate="")
        for i in range(0, s.n_images, batch):
            imgs = s.fetch(list(range(i, min(i + batch, s.n_images))))
            ok = [k for k, t in enumerate(imgs) if t is not None]
            rows = None
            if ok:
                got = [imgs[k] for k in ok]
                if len({tuple(t.shape) for t in got}) > 1:
                    got = [
                        resize(t[None].float(), size)[0].round().clamp(0, 255).byte() for t in got
                    ]
                x = prepare(torch.stack(got), size=size, normalize=normalize, crop=crop).to(device)
                e = model.embed(x, normalize=False).float()
                if flip != "none":
                    f = model.embed(x.flip(3), normalize=False).float()
                    e = e + f if flip == "sum" else torch.cat([e, f], 1)
                rows = F.normalize(e, dim=1).cpu()
            full = torch.full((len(imgs), rows.shape[1] if rows is not None else 0), float("nan"))
            if rows is not None:
                full[ok] = rows
            out.append(full)
            bar.advance(task, len(imgs))
    width = max(o.shape[1] for o in out) if out else 0
    out = [o if o.shape[1] == width else torch.full((len(o), width), float("nan")) for o in out]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def embed_model(
    model,
    s: EvalSet | Images,
    *,
    flip: str | None = None,
    device: str = "cpu",
    progress: str | None = None,
) -> np.ndarray:
    """`embed` with a saved model's own preprocessing record (`model.pre`)."""
    pre = model.pre
    return embed(
        model,
        s,
        size=pre.input_size,
        normalize=pre.normalize,
        crop=pre.crop,
        flip=flip or pre.flip,
        device=device,
        progress=progress,
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
    return EvalSet(s.name, s.n_images, s.fetch, *kept, s.images), dropped


def verify(
    model,
    s: EvalSet,
    *,
    size: int,
    normalize: str,
    crop: int | None = None,
    flip: str = "sum",
    device: str = "cpu",
    distance: str = "euclidean",
    subtract_mean: bool = False,
    far_target: float = 1e-3,
) -> dict:
    emb = embed(model, s, size=size, normalize=normalize, crop=crop, flip=flip, device=device)
    s, _ = usable_pairs(s, emb)
    r = evaluate(
        emb[s.idx1],
        emb[s.idx2],
        s.issame,
        fold_ids=s.fold,
        distance=distance,
        subtract_mean=subtract_mean,
        far_target=far_target,
    )
    out = {k: r[k] for k in METRIC_KEYS} | {"pairs_used": len(s.issame), "pairs_missing": s.missing}
    return out
