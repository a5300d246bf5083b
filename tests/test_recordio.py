"""InsightFace RecordIO and .bin files, read without MXNet; pickles admit plain data only."""

from __future__ import annotations

import io
import json
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


def test_a_train_rec_becomes_folders_facetrain_trains_on(tmp_path, monkeypatch):
    """InsightFace's datasets (MS1MV2, Glint360K...) come as train.rec: RecordIODataset read
    one, and nothing took it further. `facetrain recordio` unpacks it into one folder per
    label, the bytes as found, resumably; a record that does not decode is listed and
    skipped; the folders pack and train with the standard alignment recorded."""
    from typer.testing import CliRunner

    from facetrain import atomic
    from facetrain.cli import app
    from facetrain.data import recordio
    from facetrain.data.packed import PackedDataset, pack

    rng = np.random.default_rng(0)
    faces = [(jpeg(tuple(int(v) for v in rng.integers(0, 255, 3)), (112, 112)), float(k % 4))
             for k in range(12)]  # fmt: skip
    faces[5] = (b"\xff\xd8 not a jpeg", 1.0)
    rec, _ = write_insightface_rec(tmp_path, faces)
    out = tmp_path / "faces"
    written = []
    real = atomic.write_bytes

    def killed_after_seven(path, data):  # a kill -9 mid-way, as the next run meets it
        if len(written) == 7:
            raise KeyboardInterrupt
        written.append(path)
        real(path, data)

    monkeypatch.setattr(atomic, "write_bytes", killed_after_seven)
    with pytest.raises(KeyboardInterrupt):
        recordio.unpack_to_folders(rec, out, commit_every=3, progress=False)
    monkeypatch.setattr(atomic, "write_bytes", real)
    assert json.loads((out / recordio.PROGRESS_FILE).read_text())["done"] == 6
    res = CliRunner().invoke(app, ["recordio", str(rec), str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 6 images of 12 records" in res.output and "(6 done before)" in res.output
    assert "skipped" not in res.output  # record 6 failed in the first run, listed there
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert len(files) == 11 and "1/6.jpg" not in files and "0/1.jpg" in files
    assert (out / "1" / "2.jpg").read_bytes() == faces[1][0]  # bytes as found
    assert "6," in (out / recordio.ERRORS_FILE).read_text()
    assert json.loads((out / "align_config.json").read_text()) == recordio.STANDARD_RECORD
    from facetrain.lock import BusyError, held

    with held(out / recordio.LOCK, "recordio"), pytest.raises(BusyError, match="in use by"):
        recordio.unpack_to_folders(rec, out, progress=False)  # a second run while one unpacks
    pack(str(out), tmp_path / "pack", store="encoded", progress=False)
    ds = PackedDataset(tmp_path / "pack")
    assert len(ds) == 11 and sorted(ds.identities) == ["0", "1", "2", "3"]
    assert json.loads((tmp_path / "pack" / "align_config.json").read_text())["size"] == 112
    res = CliRunner().invoke(app, ["recordio", str(tmp_path / "none.rec"), str(out)])
    assert res.exit_code != 0 and "none.rec: no such file" in res.output
    mine = tmp_path / "mine"  # a folder of the user's is not filled
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    res = CliRunner().invoke(app, ["recordio", str(rec), str(mine)])
    assert res.exit_code == 2 and "not empty and not an unpacked RecordIO folder" in res.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    for damaged in ("{bad", '{"rec": "x", "done": -3}', "[6]"):  # its record of progress
        (out / recordio.PROGRESS_FILE).write_text(damaged)
        res = CliRunner().invoke(app, ["recordio", str(rec), str(out)])
        assert res.exit_code == 2 and f"{out / recordio.PROGRESS_FILE}: " in res.output
        assert "remove it to unpack every record again" in res.output, res.output
