"""How to feed a model: its faces prepared exactly as its preprocessing record says.

`Images` fetches photos by index (uint8, CHW), aligning raw photos on the fly with the
model's own alignment record (`face_crop`); `Arrays` holds faces already in memory;
`prepare` is the evaluation input (centre crop, normalisation, resize); `embed` and
`embed_model` give unit embeddings, adding (or concatenating) the flipped face's as
FaceNet's and InsightFace's evaluations do. Training, `eval`, `embed`, the library and the
Python API all go through here. An image that cannot be used (unreadable, no face) gets a
NaN row and a reason, never an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from facetrain.data.augment import Augment, center, resize

FLIPS = ("sum", "concat", "none")


class FaceSource(Protocol):
    """Faces by index: `Images`, `Arrays`, or an evaluation set."""

    n_images: int

    def fetch(self, ids: list[int]) -> list[torch.Tensor | None]: ...


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
    whole = whole_face(img, aligner, align)
    if whole is not None:
        return whole
    faces = aligner().faces(img, select="center")
    return faces[0].crop if faces else None


def whole_face(img: np.ndarray, aligner: Callable, align: str = "auto") -> np.ndarray | None:
    """The model's face when the image is taken whole, not searched for faces (`never`;
    under `auto` an image of the model's aligned size, or a standard 112x112 crop
    re-warped into the model's geometry); None when faces are to be detected."""
    if align == "never" or (align == "auto" and aligner().is_aligned(img)):
        return img
    if align == "auto" and aligner().is_standard_crop(img):
        return aligner().rewarp(img)
    return None


class Images:
    """Photos by index. align: `auto` aligns photos that are not already the model's aligned
    size, `always` aligns every photo, `never` takes them as they are. `crop` (a
    `FaceEmbedder`'s) replaces the source's own detector when given."""

    def __init__(self, paths: list[str], alignment: dict | None = None, align: str = "auto",
                 crop: Callable[[np.ndarray], np.ndarray | None] | None = None):  # fmt: skip
        if align not in ALIGN_MODES:
            raise ValueError(f"unknown align mode {align!r}; choose from {', '.join(ALIGN_MODES)}")
        self.paths = list(paths)
        self.alignment = alignment or {"mode": "similarity", "size": 112}
        self.align = align
        self.crop = crop or (lambda img: face_crop(img, self.aligner, self.align))
        self.problems: dict[int, str] = {}
        self._aligner = None
        self._lock = threading.Lock()  # `embed`'s reading threads share one detector

    @property
    def n_images(self) -> int:
        return len(self.paths)

    def aligner(self):
        with self._lock:
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
        crop = self.crop(img)
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
        return [
            torch.from_numpy(np.require(self.faces[i], requirements=["C", "W"])).permute(2, 0, 1)
            for i in ids
        ]


READ_STEP = 16  # images read at a time by `embed` (the bar advances this often)


@torch.no_grad()
def embed(
    model,
    s: FaceSource,
    *,
    size: int,
    normalize: str,
    crop: int | None = None,
    flip: str = "sum",
    device: str = "cpu",
    batch: int = 128,
    progress: str | None = None,
    workers: int = 0,
) -> np.ndarray:
    """Unit embeddings of every image of the set (flip: sum, concat or none); rows of images
    that could not be used are NaN. With `progress`, a bar with that title. `workers`
    threads read (decode, align) the next batches while the model runs."""
    from facetrain.progress import progress_bar

    if flip not in FLIPS:
        raise ValueError(f"unknown flip {flip!r}; choose from {', '.join(FLIPS)}")
    model.eval()
    out, pending = [], []
    step = min(batch, READ_STEP)  # read (decode, align) in small steps: a bar that moves
    steps = [list(range(i, min(i + step, s.n_images))) for i in range(0, s.n_images, step)]
    with progress_bar(disable=None if progress else True) as bar:
        task = bar.add_task(progress or "embed", total=s.n_images)
        for k, imgs in enumerate(read_ahead(s.fetch, steps, workers)):
            pending += imgs
            if len(pending) >= batch or k == len(steps) - 1:
                out.append(_embed_batch(model, pending, size, normalize, crop, flip, device))
                pending = []
            bar.advance(task, len(imgs))
    width = max(o.shape[1] for o in out) if out else 0
    out = [o if o.shape[1] == width else torch.full((len(o), width), float("nan")) for o in out]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _embed_batch(model, imgs: list, size: int, normalize: str, crop, flip: str, device: str):
    """Unit embeddings of one batch of decoded faces; NaN rows where an image is None."""
    ok = [k for k, t in enumerate(imgs) if t is not None]
    if not ok:
        return torch.full((len(imgs), 0), float("nan"))
    got = [imgs[k] for k in ok]
    if len({tuple(t.shape) for t in got}) > 1:
        got = [resize(t[None].float(), size)[0].round().clamp(0, 255).byte() for t in got]
    x = prepare(torch.stack(got), size=size, normalize=normalize, crop=crop).to(device)
    e = model.embed(x, normalize=False).float()
    if flip != "none":
        f = model.embed(x.flip(3), normalize=False).float()
        e = e + f if flip == "sum" else torch.cat([e, f], 1)
    rows = F.normalize(e, dim=1).cpu()
    full = torch.full((len(imgs), rows.shape[1]), float("nan"))
    full[ok] = rows
    return full


def read_ahead(fn, items: list, workers: int):
    """fn of each item, in order; with workers > 0, computed by that many threads at most
    2 x workers items ahead of the consumer (bounded memory)."""
    if workers <= 0:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as ex:
        queue: deque = deque()
        for item in items:
            queue.append(ex.submit(fn, item))
            if len(queue) > 2 * workers:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


def embed_model(
    model,
    s: FaceSource,
    *,
    flip: str | None = None,
    device: str = "cpu",
    progress: str | None = None,
    workers: int = 0,
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
        workers=workers,
    )
