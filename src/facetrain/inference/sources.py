"""Faces by index, as the one face embedder and the evaluation sets serve them: photos on
disk aligned on the fly with a model's own alignment record (`Images`), or faces already in
memory (`Arrays`); `arrays(ids)` gives HxWx3 uint8 faces, `fetch(ids)` the CHW tensors a
PyTorch model is fed (`feed`). An image that cannot be used (unreadable, no face) is None,
with the reason kept, never an exception. Nothing here imports torch until `fetch`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch


class FaceSource(Protocol):
    """Faces by index: `Images`, `Arrays`, or an evaluation set."""

    n_images: int

    def fetch(self, ids: list[int]) -> list[torch.Tensor | None]: ...


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
                 crop: Callable[[np.ndarray], np.ndarray | None] | None = None,
                 read: Callable[[int], np.ndarray] | None = None):  # fmt: skip
        if align not in ALIGN_MODES:
            raise ValueError(f"unknown align mode {align!r}; choose from {', '.join(ALIGN_MODES)}")
        self.paths = list(paths)
        self.alignment = alignment or {"mode": "similarity", "size": 112}
        self.align = align
        self.crop = crop or (lambda img: face_crop(img, self.aligner, self.align))
        self.problems: dict[int, str] = {}
        self.read = read  # image i's pixels from elsewhere (a pack's), paths[i] naming it
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
            img = load_rgb(self.paths[i]) if self.read is None else self.read(i)
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

    def arrays(self, ids: list[int]) -> list[np.ndarray | None]:
        return [self.load(i) for i in ids]

    def fetch(self, ids: list[int]) -> list[torch.Tensor | None]:
        return as_tensors(self.arrays(ids))


class Arrays:
    """Faces already in memory (HxWx3 uint8, e.g. aligned on the fly), for `embed`."""

    def __init__(self, faces: list[np.ndarray]):
        self.faces = faces

    @property
    def n_images(self) -> int:
        return len(self.faces)

    def arrays(self, ids: list[int]) -> list[np.ndarray]:
        return [self.faces[i] for i in ids]

    def fetch(self, ids: list[int]) -> list[torch.Tensor]:
        return as_tensors(self.arrays(ids))  # type: ignore[return-value]


def as_tensors(faces: list[np.ndarray | None]) -> list[torch.Tensor | None]:
    """HxWx3 uint8 faces as CHW tensors (sharing their memory); None stays None."""
    import torch

    return [
        None if a is None
        else torch.from_numpy(np.require(a, requirements=["C", "W"])).permute(2, 0, 1)
        for a in faces
    ]  # fmt: skip


READ_STEP = 16  # images read at a time by `embed` (the bar advances this often)


Progress = str | Callable[[int], None] | None  # a bar's title, or a caller's bar to advance


def batches(s: FaceSource, get: Callable[[list[int]], list], *, batch: int,
            progress: Progress, workers: int):  # fmt: skip
    """`get(ids)` of every image of `s`, gathered into lists of about `batch` (the last
    shorter), read in small steps by `workers` threads so that a bar moves as images are
    read: one titled `progress` (none without), or the caller's, `progress(n)` advancing
    it by n images (a bar over several sources: a resumable embedding's parts)."""
    from facetrain.progress import progress_bar

    pending: list = []
    step = min(batch, READ_STEP)
    steps = [list(range(i, min(i + step, s.n_images))) for i in range(0, s.n_images, step)]
    title = progress if isinstance(progress, str) and progress else None
    with progress_bar(disable=None if title else True) as bar:
        task = bar.add_task(title or "embed", total=s.n_images)
        advance = progress if callable(progress) else lambda n: bar.advance(task, n)
        for k, got in enumerate(read_ahead(get, steps, workers)):
            pending += got
            if len(pending) >= batch or k == len(steps) - 1:
                yield pending
                pending = []
            advance(len(got))


def reading_threads(workers: int) -> int:
    """Threads to read images ahead of the model: `workers`, or for 0 as many as the model
    runs on (`devices.inference_threads`): two on 2 cores embedded 600 photos 1.24x quicker
    than the model's own thread reading them between batches. ValueError for a negative
    number."""
    from facetrain.devices import check_workers, inference_threads

    check_workers(workers)
    return workers or inference_threads()


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
