"""The embeddings `find` made of a folder's photos, kept for the next `find` in that folder.

deepface's `find` pickles its representations into the photo folder; facetrain never writes
beside the owner's photos: the table lives in the cache folder (`cache.cache_dir()` /
find), one file a (model, folder), written atomically. A photo is embedded again when its
size or modification time changed; photos no longer listed leave the table. Each face's
stack (`library.cluster.with_new_faces`) is kept beside it: a find stacks only the faces
new since, with the stacks they come near, and the stacks that lost faces. A cache that
cannot be read or written costs only the time: the rows are embedded as without one.
Tables of folders not searched for `cache.STALE_DAYS` go when a new one is made. A long
first look at a folder is kept as it goes (every `SAVE_EVERY` seconds, and when stopped).
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import numpy as np

SAVE_EVERY = 60.0  # seconds between two writes of the table while a find looks at photos


class FolderCache:
    """Each photo's faces by path — (embeddings (k, width), boxes (k, 4)), k = 0 for none —
    with the (size, mtime_ns) of the file they were made from."""

    def __init__(self, path: Path, width: int):
        self.path, self.width = path, width
        self.known: dict[str, tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = {}
        self.stack: dict[str, np.ndarray] = {}  # each face's stack; -1: not stacked yet
        self.lost: set[int] = set()  # stacks a face left (its photo changed, or went)
        self.rule = ""  # the threshold and distance the stacks were made with
        self.seen: dict[str, tuple[int, int]] = {}
        self.changed = False
        self.saved_at = time.monotonic()

    @classmethod
    def open(cls, model_key: str, folder: Path, width: int) -> FolderCache:
        from facetrain.cache import cache_dir, used

        key = hashlib.sha256(f"{model_key}\0{folder.resolve()}".encode()).hexdigest()[:32]
        cache = cls(cache_dir() / "find" / f"{key}.npz", width)
        try:
            with np.load(used(cache.path), allow_pickle=False) as t:
                if t["embeddings"].shape[1:] == (width,):
                    cut = np.cumsum(t["counts"])[:-1]
                    stacks = t["stacks"] if "stacks" in t.files else np.full(len(t["boxes"]), -1)
                    rows = zip(t["paths"].tolist(), t["sizes"].tolist(), t["mtimes"].tolist(),
                               np.split(t["embeddings"], cut), np.split(t["boxes"], cut),
                               np.split(stacks, cut))  # fmt: skip
                    for p, s, m, e, b, k in rows:
                        cache.known[p], cache.stack[p] = ((s, m), (e, b)), k
                    cache.rule = str(t["stack_rule"]) if "stack_rule" in t.files else ""
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # none yet, or cut short or damaged: made again
        return cache

    def missing(self, paths: list[str]) -> list[str]:
        """The photos whose rows are not known for the file as it is now."""
        out = []
        for p in paths:
            try:
                st = os.stat(p)
                self.seen[p] = (st.st_size, st.st_mtime_ns)
            except OSError:
                self.seen[p] = (-1, -1)  # gone since listed: its row will say no face
            if self.known.get(p, ((None, None), None))[0] != self.seen[p]:
                out.append(p)
        return out

    def put(self, faces: dict[str, tuple[np.ndarray, np.ndarray]], unread=()) -> None:
        """The faces of photos looked at ({path: (embeddings, boxes)}); a photo that could
        not be read is left out, to be tried again by the next find (`unread`: what was
        known of such a photo goes)."""
        for p in unread:
            self.lost |= set(self.stack.pop(p, np.zeros(0, np.int64)).tolist())
            self.changed = self.known.pop(p, None) is not None or self.changed
        for p, f in faces.items():
            self.lost |= set(self.stack.get(p, np.zeros(0, np.int64)).tolist())
            self.known[p], self.stack[p] = (self.seen[p], f), np.full(len(f[0]), -1)
        self.changed = self.changed or bool(faces)

    def rows(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every face of these photos (none for one not looked at, or not read): (embeddings,
        boxes, the index of each one's photo)."""
        none = (np.zeros((0, self.width), np.float32), np.zeros((0, 4), np.float32))
        faces = [self.known[p][1] if p in self.known else none for p in paths]
        emb = [np.zeros((0, self.width), np.float32)] + [e for e, _ in faces]
        boxes = [np.zeros((0, 4), np.float32)] + [b for _, b in faces]
        owner = np.repeat(np.arange(len(paths)), [len(e) for e, _ in faces]).astype(np.int64)
        return np.concatenate(emb), np.concatenate(boxes), owner

    def stacks(self, paths: list[str], rule: str) -> np.ndarray:
        """Each face's stack, in the order of `rows`: -1 for a face not stacked yet, for
        every face of a stack that lost faces (so it is stacked again), and for every face
        when the stacks were made by another `rule` (threshold and distance)."""
        listed = set(paths)
        for p in [p for p in self.stack if p not in listed]:  # photos gone from the folder
            self.lost |= set(self.stack[p].tolist())
        parts = [self.stack[p] for p in paths if p in self.known]
        out = np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64)
        out[np.isin(out, sorted(self.lost)) | (rule != self.rule)] = -1
        return out

    def set_stacks(self, paths: list[str], stacks: np.ndarray, rule: str) -> None:
        """Each face's stack, as `stacks` gives them for these photos' `rows`, made by
        `rule`."""
        self.rule = rule
        paths = [p for p in paths if p in self.known]
        cut = np.cumsum([len(self.known[p][1][0]) for p in paths])[:-1]
        self.stack.update(zip(paths, np.split(np.asarray(stacks, np.int64), cut)))
        self.lost, self.changed = set(), True

    def save(self, paths: list[str], every: float = 0.0) -> None:
        """The table of these photos (those no longer listed are dropped, those not yet
        looked at are left for the next find), if it changed; with `every`, only when that
        many seconds went by since the last write."""
        from facetrain import atomic

        if every and time.monotonic() - self.saved_at < every:
            return
        paths = [p for p in paths if p in self.known]
        if not self.changed and set(paths) == set(self.known):
            return
        from facetrain.cache import prune

        self.saved_at = time.monotonic()  # tried: a read-only cache is not tried every step
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            emb, boxes, _ = self.rows(paths)
            with atomic.atomic_open(self.path, "wb") as f:
                np.savez(f, paths=np.array(paths, dtype=str),
                         sizes=np.array([self.known[p][0][0] for p in paths], np.int64),
                         mtimes=np.array([self.known[p][0][1] for p in paths], np.int64),
                         counts=np.array([len(self.known[p][1][0]) for p in paths], np.int64),
                         embeddings=emb.astype(np.float32),
                         boxes=boxes.astype(np.float32),
                         stacks=np.concatenate([np.zeros(0, np.int64),
                                                *(self.stack[p] for p in paths)]),
                         stack_rule=np.array(self.rule))  # fmt: skip
            if new:  # a folder searched for the first time: tables of others, long unused, go
                prune(self.path.parent, keep=self.path)
            self.changed, self.known = False, {p: self.known[p] for p in paths}
            self.stack = {p: self.stack[p] for p in paths}
        except OSError:
            pass  # a read-only cache: the next find embeds again
