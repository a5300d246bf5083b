"""InsightFace RecordIO and .bin files, read without MXNet; pickles admit plain data only."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from facetrain.data.recordio import (
    MAGIC,
    IRHeader,
    RecordIODataset,
    load_bin,
    pack_record,
    unpack,
    write_record,
)


def jpeg(color, size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=100)
    return buf.getvalue()


def write_insightface_rec(tmp_path, images_labels):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    n = len(images_labels)
    with open(rec, "wb") as f, open(idx, "w") as fi:
        header = IRHeader(2, np.array([n + 1, n + 1], np.float32), 0, 0)
        fi.write(f"0\t{write_record(f, pack_record(header, b''))}\n")
        for i, (img, label) in enumerate(images_labels, 1):
            fi.write(f"{i}\t{write_record(f, pack_record(IRHeader(0, label, i, 0), img))}\n")
    return rec, idx


def test_reads_insightface_layout(tmp_path):
    items = [(jpeg((255, 0, 0)), 0.0), (jpeg((0, 255, 0)), 1.0), (jpeg((0, 0, 255)), 1.0)]
    rec, _ = write_insightface_rec(tmp_path, items)
    ds = RecordIODataset(rec)
    assert len(ds) == 3
    img, label = ds[1]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and label == 1
    assert img[1].float().mean() > 240 and img[0].float().mean() < 15


def test_multipart_record_with_embedded_magic(tmp_path):
    magic = struct.pack("<I", MAGIC)
    payload = pack_record(IRHeader(0, 7.0, 3, 0), b"abc" + magic + b"defg" + magic + b"h")
    path = tmp_path / "x.rec"
    with open(path, "wb") as f:
        off = write_record(f, payload)
    raw = path.read_bytes()
    flags = [struct.unpack_from("<I", raw, 4)[0] >> 29]
    assert flags == [1]  # split into parts because the payload contains the magic
    from facetrain.data.recordio import read_record

    with open(path, "rb") as f:
        header, body = unpack(read_record(f, off))
    assert header.label == 7.0 and body == b"abc" + magic + b"defg" + magic + b"h"


def test_bin_protocols(tmp_path):
    imgs = [jpeg((i * 20, 0, 0)) for i in range(4)]
    for proto in (2, 4):
        p = tmp_path / f"lfw{proto}.bin"
        p.write_bytes(pickle.dumps((imgs, [True, False]), protocol=proto))
        bins, issame = load_bin(p)
        assert bins == imgs and issame.tolist() == [True, False]


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_bin_refuses_objects_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.bin"
    p.write_bytes(pickle.dumps(([Evil()], [True])))
    with pytest.raises(ValueError, match="refusing to load"):
        load_bin(p)
    assert not (tmp_path / "pwned").exists()
    p.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(ValueError, match="2 per pair"):
        load_bin(p)
