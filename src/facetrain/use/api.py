"""The small Python API: `facetrain.load()` and what it returns.

    import facetrain
    fr = facetrain.load()                    # the default pretrained model
    for face in fr.faces("group.jpg"):       # every face: box, landmarks, score, embedding
        print(face.box, face.embedding[:4])
    e = fr.embed(["a.jpg", "b.jpg"])         # one unit embedding per image (NaN: no face)
    fr.distance(e[0], e[1]) < fr.threshold   # same person?
    fr.distance(e[0], e)                     # one against many (and many against many)
    facetrain.verify("a.jpg", "b.jpg")       # {"verified": ..., "sure": ..., "distance": ...}
    facetrain.find("me.jpg", "photos/")      # the photos of a folder that hold that face
                                             # (its rows kept for the next find there)

An image is a path, an image file's bytes (or an open file), a PIL image or an RGB uint8
array (HxWx3, or HxW grey); `embed` takes one or a list. Faces are prepared exactly as the
model's record says (alignment, size, normalisation, flip), through the same functions the
command line uses.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from facetrain.distances import distance_matrix
from facetrain.inference.embedder import Face, FaceEmbedder
from facetrain.use.compare import face_of, nearest_faces, verdict, which_face
from facetrain.use.embeddings import NO_FACE, PHOTOS_AT_ONCE, PhotoFaces, every_face

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray
__all__ = ["Face", "Recognizer", "load"]


def _rgb(image: ImageLike) -> np.ndarray:
    """An image as HxWx3 uint8 RGB; ValueError (or ImageError for a file) saying why not."""
    from facetrain.data.images import load_rgb, read_rgb, to_rgb8

    if isinstance(image, str | os.PathLike):
        if not str(image):
            raise ValueError("an empty path is not an image")
        return load_rgb(image)
    if hasattr(image, "read"):  # an open file, an upload's stream
        image = image.read()
    if isinstance(image, bytes | bytearray | memoryview):  # an image file's bytes
        return read_rgb(bytes(image))
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        return to_rgb8(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"an image is a path, a file's bytes, a PIL image or an array, not "
                        f"{type(image).__name__}")  # fmt: skip
    if image.size == 0:
        raise ValueError(f"an empty image array (shape {image.shape})")
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] not in (3, 4)):  # fmt: skip
        raise ValueError(f"an image array is HxWx3 uint8 RGB (or HxWx4 RGBA, or HxW grey), "
                         f"not {image.dtype} {image.shape}")  # fmt: skip
    if image.ndim == 3 and image.shape[2] == 4:  # a PNG's pixels: as its PIL image reads
        from PIL import Image

        return to_rgb8(Image.fromarray(image, "RGBA"))
    return np.repeat(image[:, :, None], 3, 2) if image.ndim == 2 else image


def _many(images) -> list:
    """One image or a list of them, as a list (a path is one image, not its characters)."""
    if isinstance(images, str | os.PathLike | np.ndarray | bytes | bytearray | memoryview) or (
            hasattr(images, "mode") or hasattr(images, "read")):  # fmt: skip
        return [images]
    return list(images)


def _warn_unread(images: list, why: list) -> None:
    """A warning for each image that could not be read (a face-less photo is an answer, not
    a mistake: its NaN row says it), naming the file where the image is one."""
    for k, (im, w) in enumerate(zip(images, why)):
        if w is not None and w != NO_FACE:
            name = os.fspath(im) if isinstance(im, str | os.PathLike) else f"image {k + 1}"
            warnings.warn(f"{name}: {w}; its row is NaN (return_errors=True gives each "
                          "image's reason)", stacklevel=3)  # fmt: skip


class Recognizer:
    """A model with its detector: `faces(photo)`, `embed(images)`, `distance(a, b)`,
    `verify(a, b)` — the one `FaceEmbedder`, with paths, PIL images and arrays accepted."""

    def __init__(self, model, device: str = "cpu"):
        """`model`: a `saved.FaceModel` or a `compiled.CompiledModel`."""
        self.embedder = FaceEmbedder(model, device)
        self.model, self.device = model, device
        self.threshold = model.pre.threshold

    def __repr__(self) -> str:
        """What a notebook shows: the model and the rule its `threshold` is for."""
        pre, thr = self.model.pre, self.threshold
        rule = "no threshold" if thr is None else f"same under {thr:g} ({pre.distance})"
        return f"Recognizer({self.model.source}: {self.embedder.width}-d, {rule}, {self.device})"

    def faces(self, image: ImageLike) -> list[Face]:
        """Every face of a photo, detected, aligned and embedded."""
        return self.embedder.faces(_rgb(image))

    def embed(self, images, align: str = "auto", *, return_errors: bool = False):
        """One unit embedding per image (a photo's central face, or an aligned face); a NaN
        row where no face was found or the image could not be read — one bad file never
        fails the batch. With return_errors: (embeddings, [why, or None, per image])."""
        from facetrain.data.images import ImageError

        images, why = _many(images), []
        arrays = []
        for im in images:
            try:
                arrays.append(_rgb(im))
                why.append(None)
            except (ImageError, OSError, ValueError, TypeError) as e:
                arrays.append(None)
                why.append(str(e) or type(e).__name__)
        out = np.full((len(images), self.embedder.width), np.nan, np.float32)
        ok = [i for i, a in enumerate(arrays) if a is not None]
        if ok:
            out[ok] = self.embedder.embed([arrays[i] for i in ok], align)
        for i in ok:
            if np.isnan(out[i]).any():
                why[i] = NO_FACE
        if not return_errors:  # a typo'd path was a silent NaN row
            _warn_unread(images, why)
        return (out, why) if return_errors else out

    def distance(self, a: np.ndarray, b: np.ndarray):
        """The distance the model's threshold is measured in: a float for two faces, (M,)
        for one against M, (N, M) for N against M (face_recognition's face_distance)."""
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        wa, wb = np.atleast_1d(a).shape[-1], np.atleast_1d(b).shape[-1]
        if {wa, wb} != {self.embedder.width}:
            raise ValueError(f"embeddings of {wa} and {wb} numbers: this model's have "
                             f"{self.embedder.width}")  # fmt: skip
        d = distance_matrix(np.atleast_2d(a), np.atleast_2d(b), self.model.pre.distance)
        if a.ndim == 1 and b.ndim == 1:
            return float(d[0, 0])
        return d[0] if a.ndim == 1 else d[:, 0] if b.ndim == 1 else d

    def every_face(self, images) -> list[PhotoFaces]:
        """Each face of each image, as `compare` reads a photo (`embeddings.every_face`),
        read on as many threads as the model runs on."""
        from facetrain.inference.sources import reading_threads

        return every_face(self.embedder, _rgb, _many(images), threads=reading_threads(0))

    def verify(self, a: ImageLike, b: ImageLike) -> dict:
        """Are two images of one person? (deepface's `verify`): their nearest two faces, as
        `compare` judges them (a group photo: each of its faces), named in `face_a`/`face_b`
        when an image holds several; verified (under the threshold), sure (False where the
        model crowds some population at that distance: `compare.verdict`), distance,
        threshold, sure_below. An image that gave no face raises, saying why."""
        photos = self.every_face([a, b])
        why = [f"image {k + 1}: {p.error}" for k, p in enumerate(photos) if p.error]
        if why:
            raise ValueError("; ".join(why))
        if self.threshold is None:
            raise ValueError("this model has no calibrated threshold: compare distances")
        nearest, matrix = nearest_faces(photos, self.model.pre.distance)
        (fa, fb), d = nearest[0, 1], float(matrix[0, 1])
        v = verdict(d, self.threshold, self.model.pre.sure_below)
        return {"verified": v["same"], "sure": v["sure"], "distance": d,
                "threshold": self.threshold, "sure_below": self.model.pre.sure_below,
                "face_a": face_of(photos[0], fa), "face_b": face_of(photos[1], fb),
                "model": self.model.source}  # fmt: skip

    def find(self, image: ImageLike, folder: str | os.PathLike, face: int | None = None,
             workers: int = 1) -> list[dict]:  # fmt: skip
        """The photos below a folder holding the face of `image` (deepface's `find`) —
        each face of a group photo looked at — nearest first: path, distance, and which
        face (`face`: number, count and box; None for a photo of one face); `find_face`
        says when a photo is found. `face`: which face of a group photo `image` to look
        for, numbered as `verify` numbers them (its `face_a`); by default its central
        face (`faces_to_find`). `workers`: processes reading the folder's new photos, as
        `find_face` takes it."""
        folder_to_look_in(folder)  # before the image: a typo said at once
        photo, k = self.faces_to_find(image, face)
        return self.find_face(photo.embeddings[k], folder, workers)

    def faces_to_find(self, image: ImageLike, face: int | None = None) -> tuple[PhotoFaces, int]:
        """Every face of the image `find` looks for, and the index of the one it looks
        for: face number `face` (from 1, as `verify` numbers them), else the central one
        (FaceNet's rule, `select_faces`); ValueError saying why there is none (not an
        image, no face, no such number)."""
        from facetrain.align.transform import select_faces
        from facetrain.data.images import ImageError

        try:
            rgb = _rgb(image)
        except (ImageError, OSError, ValueError, TypeError) as e:
            raise ValueError(f"the image to find: {str(e) or type(e).__name__}") from None
        photo = self.every_face([rgb])[0]
        if photo.error:
            raise ValueError(f"the image to find: {photo.error}")
        n = len(photo.boxes)
        if face is not None and not 1 <= face <= n:
            from facetrain.progress import counted

            raise ValueError(f"face={face}: the image holds {counted(n, 'face')} (1 to {n})")
        if face is not None or photo.boxes[0] is None:  # asked for, or an aligned face whole
            return photo, (face or 1) - 1
        return photo, select_faces(np.asarray(photo.boxes), rgb.shape, "center")[0]

    def find_face(self, embedding: np.ndarray, folder: str | os.PathLike,
                  workers: int = 1) -> list[dict]:  # fmt: skip
        """The photos below a folder holding a face already embedded (a row of `embed`,
        or a `Face`'s embedding), as `find` gives them. A photo is found when a face of
        it is nearer than their pair's limit (the threshold, tightened by the folder's
        own spacing: `within_limits`) and in the stack the face looked for joins, the
        folder's faces stacked as the library stacks them with no names
        (`in_its_stack`): a stack is joined on the evidence of all its faces. One
        threshold found a folder's other people too, most of all where the model crowds
        a population; each pair's limit alone still mostly others there, and the stacks
        alone more of them in folders of a few East-Asian people
        (bench/find_precision.py). A folder below that is passed over (a link, one that
        cannot be listed) is a warning saying why and naming it. `workers`: processes
        reading the photos not looked at before (`processes.workers_for`: 0 chooses)."""
        from facetrain.data.listing import list_photos

        if self.threshold is None:
            raise ValueError("this model has no calibrated threshold: compare distances")
        query = np.asarray(embedding, np.float32).reshape(-1)
        if query.size != self.embedder.width:
            raise ValueError(f"a face to find is a row of {self.embedder.width} numbers, this "
                             f"model's embedding, not {query.size}")  # fmt: skip
        if not np.isfinite(query).all():
            raise ValueError("a face to find is finite: a NaN row of `embed` found no face")
        folder_to_look_in(folder)
        skipped: dict[str, str] = {}
        paths = list_photos(folder, notes=skipped)
        for where, why in skipped.items():
            warnings.warn(f"{why.removeprefix('skipped: ')}: {where}", stacklevel=2)
        unreadable: dict[str, str] = {}
        emb, boxes, owner, stacks = self.folder_faces(Path(folder), paths, unreadable, workers)
        for where, why in unreadable.items():
            warnings.warn(f"{where}: {why}; the find goes on without it", stacklevel=2)
        rule = (self.threshold, self.model.pre.distance)
        d, near = within_limits(query[None], emb, *rule, owner)
        hit = near[0] & in_its_stack(query, emb, owner, stacks, *rule)
        best: dict[int, int] = {}  # photo → its nearest face found
        for k in np.flatnonzero(hit):
            if owner[k] not in best or d[0, k] < d[0, best[owner[k]]]:
                best[owner[k]] = int(k)
        first = np.searchsorted(owner, np.arange(len(paths)))  # each photo's first face
        of = np.bincount(owner, minlength=len(paths))
        hits = sorted((float(d[0, k]), paths[i], which_face(k - first[i], of[i], boxes[k]))
                      for i, k in best.items())  # fmt: skip
        return [{"path": p, "distance": x, "face": f} for x, p, f in hits]

    def folder_faces(self, folder: Path, paths: list[str], unreadable: dict[str, str],
                     workers: int = 1):  # fmt: skip
        """Every face of a folder's photos, as `compare` reads a photo — (embeddings, boxes,
        each face's photo index) — PHOTOS_AT_ONCE photos decoded at a time (a folder never
        sits in memory whole), reusing what an earlier `find` made of files unchanged since
        (`find_cache`). A first look at a large folder is long: it shows its progress, and
        what it has looked at is kept as it goes, so a stopped find (Ctrl-C in a notebook,
        kill -9) goes on from there. A photo that cannot be read goes into `unreadable`
        with why, and is not kept: each find says so again, until it can be read. Last,
        each face's stack (`cluster.with_new_faces`; kept too, so only faces new since
        the last find, and stacks that lost faces, are stacked). The photos are read by
        `workers` processes (`processes.workers_for`), the results used in their order."""
        from facetrain.use.find_cache import FolderCache

        cache = FolderCache.open(self.model_key, folder, self.embedder.width)
        try:
            self._read_new(cache, paths, cache.missing(paths), unreadable, workers)
            emb, boxes, owner = cache.rows(paths)
            stacks = self._stacks(cache, paths, emb, owner)
        finally:  # done, or stopped: what was looked at is kept
            cache.save(paths)
        return emb, boxes, owner, stacks

    def _read_new(self, cache, paths: list[str], todo: list[str], unreadable: dict[str, str],
                  workers: int) -> None:  # fmt: skip
        """The photos `todo` read into the cache a step at a time, with a bar."""
        from facetrain.inference.processes import model_pool, workers_for
        from facetrain.progress import progress_bar
        from facetrain.use.compare import SILENT_UP_TO
        from facetrain.use.find_cache import SAVE_EVERY

        n = workers_for(workers, self.device, len(todo))
        processes = model_pool(self.model, self.device, n, FaceEmbedder, self.device)
        with (
            progress_bar(disable=None if len(todo) > SILENT_UP_TO else True) as bar,
            processes as pool,
        ):
            task = bar.add_task("find: new photos looked at", total=len(todo))
            looked = self._looked_at(todo, pool)
            for s in range(0, len(todo), PHOTOS_AT_ONCE):
                step = [next(looked) for _ in todo[s : s + PHOTOS_AT_ONCE]]
                cache.put(self._faces_of_step(step, unreadable), unreadable)
                bar.advance(task, len(step))
                cache.save(paths, every=SAVE_EVERY)

    def _stacks(self, cache, paths: list[str], emb: np.ndarray, owner: np.ndarray):
        """Each face's stack: those kept, the faces new since (and the stacks that lost
        one) stacked (`cluster.with_new_faces`) and kept — with a bar for each phase when
        there are as many as the library shows bars for."""
        from facetrain.library.cluster import with_new_faces
        from facetrain.library.library import CLUSTER_BAR_FROM, CLUSTER_PHASES
        from facetrain.neighbours import reporting
        from facetrain.progress import phases

        rule = (self.threshold, self.model.pre.distance)
        stacks = cache.stacks(paths, repr(rule))
        if (stacks < 0).any():
            quiet = (stacks < 0).sum() < CLUSTER_BAR_FROM
            with phases(CLUSTER_PHASES, disable=True if quiet else None) as said, reporting(said):
                stacks = with_new_faces(emb, owner, stacks, *rule)
            cache.set_stacks(paths, stacks, repr(rule))
        return stacks

    def _looked_at(self, paths: list[str], pool):
        """Each photo's faces (`every_face`), in order: read here, PHOTOS_AT_ONCE at a
        time, or one by one by the processes of `pool`."""
        if pool is not None:
            yield from pool.imap(_every_face_in_worker, paths)
            return
        for s in range(0, len(paths), PHOTOS_AT_ONCE):
            yield from self.every_face(paths[s : s + PHOTOS_AT_ONCE])

    def _faces_of_step(self, photos: list[PhotoFaces], unreadable: dict[str, str]) -> dict:
        """{path: (embeddings, boxes; NaN for an image taken whole)} of each photo read;
        a photo that could not be read goes into `unreadable` instead."""
        nan, out = np.full(4, np.nan), {}
        for p in photos:
            if p.error not in (None, NO_FACE):
                unreadable[p.path] = p.error
                continue
            boxes = [nan if b is None else b for b in p.boxes]
            out[p.path] = (p.embeddings, np.array(boxes, np.float32).reshape(-1, 4))
        return out

    @functools.cached_property
    def model_key(self) -> str:
        """What makes two models embed alike: their weights and their preprocessing."""
        from facetrain.inference.compiled import model_hash
        from facetrain.inference.record import EMBEDDING_FIELDS

        pre = asdict(self.model.pre)
        return model_hash(self.model) + json.dumps({k: pre[k] for k in EMBEDDING_FIELDS})


def _every_face_in_worker(path: str) -> PhotoFaces:
    """One photo's faces in a worker of `model_pool` (its FaceEmbedder)."""
    from facetrain.inference.processes import worker

    return every_face(worker(), _rgb, [path])[0]


def folder_to_look_in(folder: str | os.PathLike) -> None:
    """FileNotFoundError unless `folder` is one: a typo found nothing in silence."""
    if os.path.isfile(folder):  # a photo given where the folder goes, say
        raise NotADirectoryError(f"{folder}: a file, not a folder of photos to look in")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder of photos to look in")


def within_limits(queries: np.ndarray, faces: np.ndarray, threshold: float, distance: str,
                  photo: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(distances, under the limit?), each (queries x faces), of faces to faces seen
    together — a folder's; `photo`: each face's photo, else each on a photo of its own —
    each pair's limit the spacing rule's (`neighbours.pair_limits`: the threshold,
    tightened where those faces crowd; a face as near as a copy of one picture is no
    neighbour: `neighbours.copy_radius`). Only the faces under the threshold of a query
    (no limit is above it) have their spacing measured: a find in 100,000 faces measured
    all of them, 13 s (bench/find_precision.py --scale); a few faces are compared with
    every face of the folder, an index built for none (`neighbours.by_index`)."""
    from facetrain.neighbours import K, copy_radius, kth_in, pair_limits

    d = distance_matrix(queries, faces, distance)
    if not len(faces) or not len(queries):
        return d, np.zeros(d.shape, bool)
    photo = np.arange(len(faces)) if photo is None else photo
    copies = copy_radius(threshold)
    near = np.flatnonzero((d < threshold).any(0))
    s = np.full(len(faces), np.inf)
    s[near] = kth_in(faces[near], photo[near], faces, photo, distance, K, copies=copies)
    sq = kth_in(queries, np.full(len(queries), -1), faces, photo, distance, K, copies=copies)
    return d, d < pair_limits(sq, s, threshold)


def in_its_stack(query: np.ndarray, emb: np.ndarray, photo: np.ndarray, stacks: np.ndarray,
                 threshold: float, distance: str) -> np.ndarray:  # fmt: skip
    """Which faces of a folder (`emb`, each one's `photo` and `stacks`) are in the stack
    the face `query` joins, placed as the library places a new photo's face: the stacks
    it comes near clustered again with it (`cluster.with_new_faces`)."""
    from facetrain.library.cluster import with_new_faces

    if not len(emb):
        return np.zeros(0, bool)
    both = with_new_faces(np.vstack([emb, query[None].astype(emb.dtype)]),
                          np.r_[photo, int(photo.max()) + 1], np.r_[stacks, -1], threshold,
                          distance)  # fmt: skip
    return both[:-1] == both[-1]


def load(model: str | os.PathLike | None = None, device: str = "cpu") -> Recognizer:
    """A MODEL (run folder, weights, exported file, `pretrained:NAME`; None: the default)."""
    from facetrain.inference.pretrained import DEFAULT

    if model is not None and not str(model).strip():
        raise ValueError("an empty model name: leave it out for the default")
    from facetrain.inference.compiled import open_for_use

    fm = open_for_use(model or DEFAULT, device)
    if os.environ.get("FACETRAIN_THREADS") and fm.backend == "torch":  # else: the caller's
        import torch

        from facetrain.devices import inference_threads

        torch.set_num_threads(inference_threads())
    return Recognizer(fm, device)
