"""Packed datasets: aligned faces in a few large shard files + one index, for fast loading.

Layout of a pack folder:
    meta.json          format version, counts, image size, splits (written last: "complete")
    identities.txt     one identity per line; the line number is the label
    index.npy          one row per image: shard, offset, length, label, split
    paths.txt          the source path of each row (traceability)
    shard-00000.bin …  the images, back to back

Two ways to store the images (`store`):
- `raw` (default): decoded HxWx3 uint8 pixels, all of one size (aligned faces are). Loading
  is a memory copy — no JPEG decode per step, which is what bounds a CPU loader — at ~6x
  the disk of JPEG (112x112: 37 KB per face, 0.4 GB per 10k faces).
- `encoded`: the bytes as found (JPEG/PNG/WebP; others become PNG): smallest on disk,
  decoded by torchvision (libjpeg-turbo) a batch per call. For MS-Celeb-sized sets.
Packing is resumable shard by shard.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrain import atomic
from facetrain.data.images import ImageError, load_rgb, open_checked
from facetrain.data.listing import (
    UNLABELLED,
    DatasetError,
    Problems,
    check_listable,
    is_pack,
    iter_samples,
    parse_roots,
    roots_said,
)
from facetrain.devices import out_of_memory
from facetrain.lock import held
from facetrain.run_folder import ALIGN_RECORD

FORMAT_VERSION = 1
INDEX_DTYPE = np.dtype(
    [("shard", "<u4"), ("offset", "<u8"), ("length", "<u4"), ("label", "<i4"), ("split", "u1")]
)
SPLITS = ("train", "val")
_KEEP_FORMATS = {"JPEG", "PNG", "WEBP"}
STORES = ("raw", "encoded")
LOCK = ".pack.lock"  # held while a pack is written: one process at a time


def _split_sources(data) -> list[tuple[int, object]]:
    """A split folder (train.txt/val.txt) gives two sources; anything else is all 'train'."""
    if isinstance(data, str | os.PathLike) and os.path.isdir(data):
        d = Path(data)
        if (d / "train.txt").is_file():
            srcs = [(0, str(d / "train.txt"))]
            if (d / "val.txt").is_file():
                srcs.append((1, str(d / "val.txt")))
            return srcs
    return [(0, data)]


def _iter_split_samples(data, merge_same_names, problems, loose=False):
    for split_id, src in _split_sources(data):
        for s in iter_samples(src, merge_same_names=merge_same_names, problems=problems,
                              loose=loose):  # fmt: skip
            yield split_id, check_listable(s)


def _encoded(path: str, store: str = "encoded") -> tuple[bytes, tuple[int, int]]:
    """The bytes to store for an image and its (width, height).

    raw: decoded RGB pixels. encoded: the file's bytes (re-encoded as PNG only when not
    JPEG/PNG/WebP), after a check that it decodes.
    """
    if store == "raw":
        a = load_rgb(path)
        return a.tobytes(), (a.shape[1], a.shape[0])
    with open_checked(path) as img:
        fmt, size = img.format, img.size
        img.load()  # a file that does not decode is refused now, not mid-training
    if fmt in _KEEP_FORMATS:
        with open(path, "rb") as f:
            return f.read(), size
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(load_rgb(path)).save(buf, format="PNG")
    return buf.getvalue(), size


@dataclass
class PackSummary:
    images: int
    identities: int
    shards: int
    skipped: int
    splits: dict


def _alignment_of(roots: set[Path]) -> dict | None:
    """The alignment record of the folders the faces come from, which the pack keeps so that
    a model trained on it saves how its faces were made; faces of differently aligned
    folders are refused rather than mixed, and so is a record no aligner can follow."""
    from facetrain.data.alignment import read_alignment

    records = {r / ALIGN_RECORD: rec for r in roots if (rec := read_alignment(r)) is not None}
    if len({json.dumps(rec, sort_keys=True) for rec in records.values()}) > 1:
        raise DatasetError(
            f"the faces come from folders aligned differently ({', '.join(map(str, records))});"
            " pack each alignment on its own"
        )
    return next(iter(records.values()), None)


def _blob(path: str, store: str, raw_size: tuple[int, int] | None):
    """A sample's stored bytes and size; a raw pack holds one size only."""
    blob, size = _encoded(path, store)
    if store == "raw" and raw_size is not None and size != raw_size:
        w, h = size
        raise ImageError(
            "wrong_size",
            f"{w}x{h} differs from the pack's {raw_size[0]}x{raw_size[1]}"
            " (raw packs hold one size; align first, or --store encoded)",
        )
    return blob, size


def _write_shard(out: Path, k: int, chunk, store, raw_size, label_of, skipped_log, advance):
    """Shard k's data file and its part index (atomically); the sizes it holds and the
    pack's raw size so far. A sample that cannot be used is logged with its reason."""
    rows, paths, shard_sizes = [], [], []
    with atomic.atomic_open(out / f"shard-{k:05d}.bin", "wb") as f:
        for split_id, s in chunk:
            try:
                blob, size = _blob(s.path, store, raw_size)
            except (ImageError, OSError) as e:
                reason = e.reason if isinstance(e, ImageError) else str(e)
                skipped_log.write(f"{s.path}\t{reason}\n")
                advance()
                continue
            if store == "raw":
                raw_size = raw_size or size
            rows.append((k, f.tell(), len(blob), label_of[s.identity], split_id))
            paths.append(s.path)
            shard_sizes.append(size)
            f.write(blob)
            advance()
    index = np.array(rows, dtype=INDEX_DTYPE)
    sizes = np.array(shard_sizes, np.int32).reshape(-1, 2)
    with atomic.atomic_open(out / ".partial" / f"shard-{k:05d}.npz", "wb") as pf:
        np.savez(pf, index=index, paths=np.array(paths, dtype=str), sizes=sizes)
    return sizes, raw_size


@dataclass
class _Listing:
    """What a pack will hold, listed before anything is written (a name the listing refuses
    leaves no output behind)."""

    identities: list[str]
    roots: set[Path]  # the folders the faces come from (their alignment record)
    total: int
    digest: str  # of what was listed, so that a resumed run sees a change
    train_labels: np.ndarray  # the training split's labels, as listed


def _list(data, merge_same_names: bool, unlabelled: bool) -> _Listing:
    names: set[str] = set()
    roots: set[Path] = set()
    train: list[str] = []
    total, digest = 0, hashlib.sha256()
    for split_id, s in _iter_split_samples(data, merge_same_names, Problems(), unlabelled):
        names.add(s.identity)
        if split_id == 0:
            train.append(s.identity)
        roots.add(Path(s.path).parent if s.identity == UNLABELLED else Path(s.path).parent.parent)
        total += 1
        digest.update(f"{split_id}\t{s.identity}\t{s.path}\n".encode())
    identities = sorted(names)
    label_of = {n: i for i, n in enumerate(identities)}
    labels = np.array([label_of[n] for n in train], dtype=np.int64)
    return _Listing(identities, roots, total, digest.hexdigest(), labels)


def pack(
    data,
    out: str | os.PathLike,
    *,
    images_per_shard: int = 20000,
    store: str = "raw",
    merge_same_names: bool = False,
    progress: bool | None = None,
    unlabelled: bool = False,
    before_writing: Callable[[np.ndarray], None] | None = None,
) -> PackSummary:
    """Pack a dataset (folders, list file, or a split folder) into OUT: listed first, then
    written shard by shard (a shard written is kept: an interrupted pack resumes), then
    indexed. `before_writing` is given the training split's labels as listed, before an
    image is read: a use that cannot fit the data (a batch larger than it, say) refuses
    there, not after the packing."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}; choose from {', '.join(STORES)}")
    listing = _list(data, merge_same_names, unlabelled)
    if listing.total == 0:  # it had written a pack of nothing, which every use then refused
        what = "a folder of face photos" if unlabelled else "a folder per person, of photos"
        raise DatasetError(f"{roots_said(data)}: no images to pack ({what})")
    if before_writing is not None:
        before_writing(listing.train_labels)
    alignment = _alignment_of(listing.roots)
    out = Path(out)
    roots = parse_roots(data, loose=unlabelled)
    atomic.output_folder(out, inputs=roots, own=("meta.json", ".partial", LOCK), kind="pack")
    # a second pack into OUT removed the first's temporaries under it ("No such file")
    with held(out / LOCK, f"pack {out}"):
        (out / ".partial").mkdir(exist_ok=True)
        atomic.remove_stale_temps(out)
        if alignment is not None:
            atomic.write_text(out / ALIGN_RECORD, json.dumps(alignment, indent=2) + "\n")
        names = "".join(f"{n}\n" for n in listing.identities)
        atomic.write_text(out / "identities.txt", names)
        samples = _iter_split_samples(data, merge_same_names, Problems(), unlabelled)
        n_shards = (listing.total + images_per_shard - 1) // images_per_shard
        sizes = _write_shards(out, samples, listing, n_shards, images_per_shard, store, progress)
        return _finish(out, listing, n_shards, store, sizes)


def _write_shards(out: Path, samples, listing: _Listing, n_shards: int, per_shard: int,
                  store: str, progress: bool | None) -> set[tuple[int, int]]:  # fmt: skip
    """Every shard not written yet (an interrupted pack skips those it finished); the image
    sizes seen."""
    from facetrain.progress import progress_bar

    state = out / ".partial"
    label_of = {n: i for i, n in enumerate(listing.identities)}
    sizes: set[tuple[int, int]] = set()
    raw_size: tuple[int, int] | None = None
    with (
        open(state / "skipped.tsv", "a", encoding="utf-8") as skipped_log,
        progress_bar(disable=progress is False if progress is not None else None) as bar,
    ):
        task = bar.add_task("pack", total=listing.total)
        for k in range(n_shards):
            chunk = [next(samples) for _ in range(min(per_shard, listing.total - k * per_shard))]
            part = state / f"shard-{k:05d}.npz"
            if part.exists() and (out / f"shard-{k:05d}.bin").exists():
                sizes.update(map(tuple, np.load(part)["sizes"].tolist()))
                raw_size = raw_size or (next(iter(sizes)) if sizes else None)
                bar.advance(task, len(chunk))
                continue
            shard_sizes, raw_size = _write_shard(
                out, k, chunk, store, raw_size, label_of, skipped_log, lambda: bar.advance(task)
            )
            sizes.update(map(tuple, shard_sizes.tolist()))
    return sizes


def _finish(out: Path, listing: _Listing, n_shards: int, store: str,
            sizes: set[tuple[int, int]]) -> PackSummary:  # fmt: skip
    """The pack's paths, index and meta.json from its shards' parts; the parts removed."""
    state = out / ".partial"
    index_parts = []
    with atomic.atomic_open(out / "paths.txt", "w") as f:
        for k in range(n_shards):  # one shard's paths in memory at a time
            with np.load(state / f"shard-{k:05d}.npz") as p:
                index_parts.append(p["index"])
                f.writelines(f"{x}\n" for x in p["paths"].tolist())
    index = np.concatenate(index_parts) if index_parts else np.zeros(0, INDEX_DTYPE)
    with atomic.atomic_open(out / "index.npy", "wb") as f:
        np.save(f, index)
    skipped = (state / "skipped.tsv").read_text(encoding="utf-8").count("\n")
    splits = {name: int((index["split"] == i).sum()) for i, name in enumerate(SPLITS)}
    with_images = int(len(np.unique(index["label"])))  # an identity whose images all failed
    meta = {  # keeps its label (identities.txt) but is not counted
        "format": "facetrain-pack",
        "version": FORMAT_VERSION,
        "images": int(len(index)),
        "identities": with_images,
        "identities_without_images": len(listing.identities) - with_images,
        "shards": n_shards,
        "store": store,
        "splits": splits,
        "image_size": list(next(iter(sizes))) if len(sizes) == 1 else None,
        "skipped": skipped,
        "listing_sha256": listing.digest,
    }
    atomic.write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    os.replace(state / "skipped.tsv", out / "skipped.tsv")
    for p in state.iterdir():
        p.unlink()
    state.rmdir()
    return PackSummary(len(index), with_images, n_shards, skipped, splits)


def listing_digest(data, merge_same_names: bool = False, unlabelled: bool = False) -> str:
    """The digest `pack` records of what it listed (meta.json `listing_sha256`)."""
    return _list(data, merge_same_names, unlabelled).digest


class PackError(DatasetError):
    """A pack that is incomplete or damaged: the message names the file."""


def _open_pack(path: Path):
    """(meta, index) of a complete, undamaged pack; PackError naming the file otherwise."""
    meta_path = path / "meta.json"
    if not meta_path.exists():
        raise PackError(f"{path}: not a complete facetrain pack (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):  # JSONDecodeError is a ValueError
        raise PackError(f"{meta_path}: corrupt pack (meta.json is not readable JSON)") from None
    try:  # numpy's own message would advise allow_pickle: never for a pack
        index = np.load(path / "index.npy", allow_pickle=False)
    except (OSError, ValueError):
        raise PackError(f"{path / 'index.npy'}: corrupt pack (not an index array)") from None
    if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
        raise PackError(f"{path}: pack format {getattr(meta, 'get', dict().get)('version')}"
                        " unsupported or damaged")  # fmt: skip
    if index.dtype != INDEX_DTYPE:
        raise PackError(f"{path}/index.npy: corrupt pack index")
    _check_shards(path, index)
    return meta, index


def _check_shards(path: Path, index: np.ndarray) -> None:
    """Every shard the index names is there and holds the bytes it names: a shard cut short
    (a disk that filled, a copy that stopped) failed a training run mid-epoch with numpy's
    `cannot reshape array of size 0`."""
    if not len(index):
        return
    needed = np.zeros(int(index["shard"].max()) + 1, np.uint64)
    np.maximum.at(needed, index["shard"], index["offset"] + index["length"])
    for shard in np.unique(index["shard"]):
        name = path / f"shard-{int(shard):05d}.bin"
        if not name.is_file():
            raise PackError(f"{path}: the pack is missing {name.name}")
        if (size := name.stat().st_size) < needed[shard]:
            raise PackError(f"{name}: cut short ({size:,} bytes of the {int(needed[shard]):,} "
                            "its index names); pack the data again")  # fmt: skip


class PackedDataset:
    """Random access to a pack: `ds[i] -> (uint8 CHW tensor, label)`, `ds.batch(ids)` a
    whole batch decoded in one call (what training's `data.loader.TrainLoader` reads), and
    a torch DataLoader's batched fetch (`__getitems__`) for use elsewhere. Shards are
    memory-mapped lazily in each worker process."""

    def __init__(self, path: str | os.PathLike, split: str | None = "train"):
        self.path = Path(path)
        self.meta, index = _open_pack(self.path)
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None")
        in_split = slice(None) if split is None else index["split"] == SPLITS.index(split)
        self.rows = np.arange(len(index))[in_split]  # this split's rows of the whole pack
        self.index = index[self.rows]
        self.identities = (self.path / "identities.txt").read_text(encoding="utf-8").splitlines()
        self._maps: dict[int, np.memmap] = {}
        self._pid = -1

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        """What a notebook shows: where, which split, how many, and how the images are kept."""
        size = self.meta.get("image_size")
        kept = f"{size[0]}x{size[1]} {self.meta['store']}" if size else self.meta.get("store")
        people = len(self.labels_held)
        return f"PackedDataset({self.path}: {len(self):,} images of {people:,} identities, {kept})"

    def identity_names(self) -> list[str]:
        """Each image's identity by name."""
        return [self.identities[k] for k in self.labels.tolist()]

    def source_paths(self) -> list[str]:
        """The photo each image was packed from (`paths.txt`), in this split's order."""
        every = (self.path / "paths.txt").read_text(encoding="utf-8").splitlines()
        return [every[k] for k in self.rows.tolist()]

    def rgb(self, i: int) -> np.ndarray:
        """Image i as HxWx3 uint8, as a photo is read (what an embedder takes)."""
        return self[i][0].permute(1, 2, 0).numpy()

    @property
    def labels(self) -> np.ndarray:
        return self.index["label"]

    @functools.cached_property
    def labels_held(self) -> np.ndarray:
        """The identity labels this split holds, each once, sorted (a sort of every label:
        computed once)."""
        return np.unique(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def _bytes(self, i: int) -> np.ndarray:
        if self._pid != os.getpid():  # new worker process: its own maps
            self._maps, self._pid = {}, os.getpid()
        row = self.index[i]
        shard = int(row["shard"])
        m = self._maps.get(shard)
        if m is None:
            m = np.memmap(self.path / f"shard-{shard:05d}.bin", dtype=np.uint8, mode="r")
            self._maps[shard] = m
        off = int(row["offset"])
        return m[off : off + int(row["length"])]

    def _decode(self, indices, device=None):
        """uint8 images (N,3,H,W) for a raw pack; a list of (3,H,W) for an encoded one.
        With a CUDA `device`, JPEGs are decoded there (nvJPEG through torchvision) and
        raw pixels are copied there: the CPU only reads bytes."""
        import torch

        if self.meta.get("store") == "raw":
            w, h = self.meta["image_size"]
            arr = np.stack([self._bytes(i) for i in indices]).reshape(len(indices), h, w, 3)
            x = torch.from_numpy(arr)
            if device is not None:
                x = x.to(device, non_blocking=True)
            return x.permute(0, 3, 1, 2)
        try:
            return self._decode_encoded(indices, device)
        except RuntimeError as e:
            bad = None if out_of_memory(e) else self._undecodable(indices)
            if bad is None:  # out of memory (said by training), or the GPU's decoder's own
                raise
            raise PackError(bad) from None

    def _decode_encoded(self, indices, device=None) -> list:
        import torch
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg

        blobs = [torch.from_numpy(np.array(self._bytes(i))) for i in indices]
        jpeg = [bool(b[0] == 0xFF and b[1] == 0xD8) for b in blobs]
        out = [None] * len(blobs)
        jidx = [k for k, j in enumerate(jpeg) if j]
        if jidx:
            where = device if device is not None and str(device).startswith("cuda") else "cpu"
            if where != "cpu":  # nvJPEG may write into memory queued kernels still read
                torch.cuda.current_stream(where).synchronize()  # (torchvision issue 9606)
            decoded = decode_jpeg([blobs[k] for k in jidx], mode=ImageReadMode.RGB, device=where)
            for k, img in zip(jidx, decoded):
                out[k] = img
        for k, j in enumerate(jpeg):
            if not j:
                out[k] = decode_image(blobs[k], mode=ImageReadMode.RGB)
        if device is not None:
            out = [x.to(device) for x in out]
        return out

    def _undecodable(self, indices) -> str | None:
        """Which image of a batch does not decode on the CPU, named by shard and source
        photo (None: each does): the pack checked each image as it packed it, so its shard
        was damaged since (a traceback from torchvision's decoder had ended the run
        mid-epoch)."""
        bad = next((i for i in indices if not self._decodes(i)), None)
        if bad is None:
            return None
        shard = self.path / f"shard-{int(self.index[bad]['shard']):05d}.bin"
        return (f"{shard}: image {self.rows[bad]} (packed from {self.source_paths()[bad]}) "
                "does not decode; the pack was damaged after it was made: pack the data "
                "again")  # fmt: skip

    def _decodes(self, i: int) -> bool:
        """Whether image i decodes on the CPU, as a batch of its own."""
        try:
            self._decode_encoded([i])
            return True
        except RuntimeError:
            return False

    def __getitem__(self, i):
        """`ds[i] -> (image, label)`; `ds[[i, j, …]] -> (images (N,3,H,W), labels (N,))`."""
        if isinstance(i, list | tuple | np.ndarray):
            return self.batch(i)
        return self.__getitems__([i])[0]

    def batch(self, indices, device=None):
        """One whole batch as two tensors, decoded in one go — on `device` when given (the
        GPU data path: decode where training runs)."""
        import torch

        imgs = self._decode(indices, device)
        labels = torch.from_numpy(self.index["label"][np.asarray(indices)].astype(np.int64))
        if device is not None:
            labels = labels.to(device)
        return (imgs if isinstance(imgs, torch.Tensor) else torch.stack(imgs)), labels

    def __getitems__(self, indices):
        """DataLoader's batched fetch for the default collate: a list of (image, label)."""
        images, labels = self.batch(indices)
        return list(zip(images.unbind(0), labels.tolist()))


def pack_of(roots) -> PackedDataset | None:
    """The whole pack (both splits) when roots name one pack's folder, else None: what a
    command reading identity folders takes a pack for."""
    roots = [roots] if isinstance(roots, str | os.PathLike) else list(roots)
    if len(roots) == 1 and is_pack(roots[0]):
        return PackedDataset(roots[0], split=None)
    return None
