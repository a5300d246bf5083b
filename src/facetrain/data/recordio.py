"""InsightFace data files, read without MXNet: `train.rec`/`train.idx` and `.bin` pair sets.

RecordIO: each record is a little-endian uint32 magic 0xCED7230A, a uint32 whose top 3
bits are a continuation flag and low 29 bits the length, the payload, and zero padding to 4
bytes. Payloads larger than one chunk, or containing the magic, are split into parts
(flag 1 = first, 2 = middle, 3 = last) and rejoined with the magic between them. The
payload starts with MXNet's IRHeader (uint32 flag, float32 label, uint64 id, uint64 id2);
when flag > 0, `flag` float32 labels follow; then the encoded image. In InsightFace's
train.rec, record 0 is a header whose label[0] is the first index past the images.

`.bin` verification sets are pickles of (list of encoded images, list of bools). Pickle
can run code, so they are read by an unpickler that admits plain data only.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrain.data.images import encoded_ext
from facetrain.errors import FacetrainError
from facetrain.run_folder import ALIGN_RECORD

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")


class RecordIOError(FacetrainError):
    pass


@dataclass(frozen=True)
class IRHeader:
    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def read_record(f, offset: int) -> bytes:
    """The payload of the record starting at `offset` (multi-part records rejoined)."""
    f.seek(offset)
    parts: list[bytes] = []
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise RecordIOError(f"truncated record header at byte {f.tell() - len(head)}")
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordIOError(f"bad magic {magic:#x} at byte {f.tell() - 8}")
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        data = f.read(length)
        if len(data) < length:
            raise RecordIOError("truncated record payload")
        f.seek((4 - length % 4) % 4, os.SEEK_CUR)
        parts.append(data)
        if cflag in (0, 3):
            break
        if cflag not in (1, 2):
            raise RecordIOError(f"bad continuation flag {cflag}")
    return _MAGIC_BYTES.join(parts)


def unpack(payload: bytes) -> tuple[IRHeader, bytes]:
    """Split a payload into its IRHeader and the image bytes."""
    if len(payload) < _HEADER.size:
        raise RecordIOError("record shorter than its header")
    flag, label, id1, id2 = _HEADER.unpack_from(payload)
    body = payload[_HEADER.size :]
    if flag > 0:
        labels = np.frombuffer(body[: 4 * flag], dtype="<f4").copy()
        return IRHeader(flag, labels, id1, id2), body[4 * flag :]
    return IRHeader(flag, label, id1, id2), body


def pack_record(header: IRHeader, image: bytes) -> bytes:
    """Inverse of `unpack` (used to write test files and to re-export)."""
    if header.flag > 0:
        labels = np.asarray(header.label, dtype="<f4")
        return _HEADER.pack(len(labels), 0.0, header.id, header.id2) + labels.tobytes() + image
    return _HEADER.pack(0, float(header.label), header.id, header.id2) + image


def write_record(f, payload: bytes) -> int:
    """Append a record (split at embedded magic, like MXNet's writer); returns its offset."""
    offset = f.tell()
    chunks = payload.split(_MAGIC_BYTES)
    for i, chunk in enumerate(chunks):
        if len(chunks) == 1:
            cflag = 0
        else:
            cflag = 1 if i == 0 else (3 if i == len(chunks) - 1 else 2)
        f.write(struct.pack("<II", MAGIC, (cflag << 29) | len(chunk)))
        f.write(chunk)
        f.write(b"\0" * ((4 - len(chunk) % 4) % 4))
    return offset


class RecordIODataset:
    """InsightFace `train.rec` + `train.idx`: `ds[i] -> (uint8 CHW tensor, int label)`."""

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike | None = None):
        self.rec = Path(rec)
        self.idx = Path(idx) if idx else self.rec.with_suffix(".idx")
        keys, offsets = [], []
        with open(self.idx, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    k, off = line.split("\t")
                    keys.append(int(k))
                    offsets.append(int(off))
                except ValueError:
                    raise RecordIOError(f"{self.idx}:{n}: expected 'key<TAB>offset'") from None
        self.offsets = dict(zip(keys, offsets))
        self._f = None
        self._pid = -1
        try:
            header, _ = unpack(self._read(0)) if 0 in self.offsets else (None, b"")
        except RecordIOError as e:
            raise RecordIOError(f"{self.rec}: its first record cannot be read ({e}): not a "
                                "RecordIO file, or a damaged one") from None  # fmt: skip
        if header is not None and header.flag > 0:  # InsightFace layout: images are 1..N-1
            self.keys = np.arange(1, int(header.label[0]), dtype=np.int64)
        else:
            self.keys = np.array(sorted(keys), dtype=np.int64)

    def _read(self, key: int) -> bytes:
        if self._pid != os.getpid():
            self._f, self._pid = open(self.rec, "rb"), os.getpid()  # noqa: SIM115
        return read_record(self._f, self.offsets[key])

    def __len__(self) -> int:
        return len(self.keys)

    def record(self, i: int) -> tuple[IRHeader, bytes]:
        return unpack(self._read(int(self.keys[i])))

    def __getitem__(self, i: int):
        import torch
        from torchvision.io import ImageReadMode, decode_image

        header, image = self.record(i)
        img = decode_image(torch.frombuffer(bytearray(image), dtype=torch.uint8), ImageReadMode.RGB)
        return img, label_of(header)


class _PlainDataUnpickler(pickle.Unpickler):
    """Admits tuples, lists, dicts, str, bytes, numbers, bools — and no other object."""

    _ALLOWED = {("_codecs", "encode")}  # how protocol-2 pickles spell a bytes object

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a .bin verification set holds only plain data"
        )


def load_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Read an InsightFace `.bin` verification set: (encoded images, issame per pair)."""
    with open(path, "rb") as f:
        try:
            obj = _PlainDataUnpickler(io.BufferedReader(f), encoding="bytes").load()
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path}: {e}") from None
        except (EOFError, struct.error, ValueError) as e:
            raise ValueError(f"{path}: not a readable .bin verification set ({e})") from None
    if not (isinstance(obj, tuple | list) and len(obj) == 2):
        raise ValueError(f"{path}: expected a pair (images, issame)")
    bins, issame = obj
    bins = [bytes(b) if isinstance(b, bytes | bytearray) else None for b in bins]
    if any(b is None for b in bins):
        raise ValueError(f"{path}: images must be encoded bytes")
    issame = np.asarray([bool(x) for x in issame])
    if len(bins) != 2 * len(issame):
        raise ValueError(
            f"{path}: {len(bins)} images for {len(issame)} pairs (expected 2 per pair)"
        )
    return bins, issame


PROGRESS_FILE = "recordio_progress.json"
ERRORS_FILE = "recordio_errors.csv"
LOCK = ".recordio.lock"  # held while records are unpacked into OUT: one process at a time
# InsightFace's faces are 112x112 on the ArcFace five-point template: facetrain's standard
# alignment, recorded so that a model trained on them saves how its faces were made
STANDARD_RECORD = {"mode": "similarity", "size": 112}


def label_of(header: IRHeader) -> int:
    """A record's identity: its first label."""
    return int(header.label[0] if isinstance(header.label, np.ndarray) else header.label)


def _done_before(state_path: Path, which: str) -> int:
    """How many records of `which` an earlier run unpacked (0: none, or another .rec's);
    RecordIOError naming the file when it is damaged."""
    if not state_path.is_file():
        return 0
    from facetrain import foreign

    try:
        state = foreign.loads(state_path.read_bytes())
    except ValueError as e:
        raise RecordIOError(f"{state_path}: damaged ({e}); remove it to unpack every record "
                            "again") from None  # fmt: skip
    done = state.get("done") if isinstance(state, dict) else None
    if not (isinstance(done, int) and not isinstance(done, bool) and done >= 0):
        raise RecordIOError(f"{state_path}: not the count facetrain writes; remove it to "
                            "unpack every record again")  # fmt: skip
    return done if state.get("rec") == which else 0


def unpack_to_folders(rec: str | os.PathLike, out: str | os.PathLike, *,
                      commit_every: int = 1000, progress: bool | None = None) -> dict:  # fmt: skip
    """InsightFace `train.rec` (+ `.idx`) into OUT/<label>/<record>.<ext>, the bytes as
    found: a dataset the rest of facetrain reads (`pack --store encoded` keeps them so).
    Resumable: the records done are committed to OUT/recordio_progress.json after their
    files exist; a record that does not decode goes to OUT/recordio_errors.csv."""
    from facetrain import atomic
    from facetrain.lock import held

    ds = RecordIODataset(rec)
    out = atomic.output_folder(out, inputs=[rec], own=(PROGRESS_FILE, ERRORS_FILE, LOCK),
                               kind="unpacked RecordIO")  # fmt: skip
    with held(out / LOCK, f"unpacking into {out}"):  # a second run: its errors, twice
        return _unpack(ds, out, commit_every, progress)


def _unpack(ds: RecordIODataset, out: Path, commit_every: int, progress: bool | None) -> dict:
    """The records not unpacked yet (OUT's progress record), unpacked into OUT."""
    import csv

    from facetrain import atomic
    from facetrain.progress import progress_bar

    state_path, which = out / PROGRESS_FILE, str(ds.rec.resolve())
    done = _done_before(state_path, which)
    counts = {"written": 0, "bad": 0, "done_before": done}
    new_errors = not (out / ERRORS_FILE).exists()
    with (
        open(out / ERRORS_FILE, "a", newline="", encoding="utf-8") as ef,
        progress_bar(disable=progress is False if progress is not None else None) as bar,
    ):
        errors = csv.writer(ef)
        if new_errors:
            errors.writerow(["record", "reason"])
        task = bar.add_task("unpack", total=len(ds), completed=done)
        for i in range(done, len(ds)):
            try:
                header, image = ds.record(i)
                path = out / str(label_of(header)) / f"{int(ds.keys[i])}.{encoded_ext(image)}"
            except (ValueError, RecordIOError, struct.error) as e:
                errors.writerow([int(ds.keys[i]), str(e)])
                counts["bad"] += 1
            else:
                atomic.write_bytes(path, image)
                counts["written"] += 1
            bar.advance(task)
            if (i + 1) % commit_every == 0 or i + 1 == len(ds):
                ef.flush()
                atomic.write_text(state_path, json.dumps({"rec": which, "done": i + 1}) + "\n")
    atomic.write_text(out / ALIGN_RECORD, json.dumps(STANDARD_RECORD, indent=2) + "\n")
    return counts | {"records": len(ds)}
