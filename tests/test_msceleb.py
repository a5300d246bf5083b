"""MS-Celeb-1M TSV decoding: both layouts, bad rows, resume after an interruption."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrain import atomic
from facetrain.cli import app
from facetrain.data.msceleb import decode_tsv


def jpeg_b64(seed: int) -> tuple[str, bytes]:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode(), buf.getvalue()


def make_tsvs(tmp: Path) -> tuple[Path, Path, dict[str, bytes]]:
    expected: dict[str, bytes] = {}
    seven, six = [], []
    for i in range(6):
        b64, raw = jpeg_b64(i)
        mid = f"m.0{i % 3}"
        seven.append(f"{mid}\t{i}\thttp://img/{i}\thttp://page/{i}\tFaceId-{i}\tAAAA\t{b64}")
        expected[f"{mid}/{i}-FaceId-{i}.jpg"] = raw
    for i in range(4):
        b64, raw = jpeg_b64(100 + i)
        six.append(f"m.1{i % 2}\tName {i % 2}\t{i}\thttp://img\thttp://page\t{b64}")
        expected[f"m.1{i % 2}/{i}.jpg"] = raw
    seven.insert(2, "m.0x\t1\tonly four\tcolumns")
    seven.insert(4, "m.0y\t1\turl\tpage\tFaceId-9\tAAAA\t!!!not base64!!!")
    six.append(f"m.2\tN\t1\turl\tpage\t{base64.b64encode(b'GIF89a broken').decode()}")
    a, b = tmp / "aligned.tsv", tmp / "old.tsv"
    a.write_text("\n".join(seven) + "\n")
    b.write_text("\n".join(six) + "\n")
    return a, b, expected


def written(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.parent != out
    }


def test_both_layouts_and_bad_rows(tmp_path):
    a, b, expected = make_tsvs(tmp_path)
    res = CliRunner().invoke(app, ["msceleb", str(a), str(b), str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert written(tmp_path / "out") == expected  # bytes kept as found
    errors = (tmp_path / "out" / "msceleb_errors.csv").read_text().splitlines()
    assert len(errors) == 4  # header + 3 bad rows, each with file, line and reason
    assert "columns" in errors[1] and "base64" in errors[2] and "image" in errors[3]
    assert errors[1].split(",")[1] == "3"
    names = (tmp_path / "out" / "msceleb_names.tsv").read_text().splitlines()
    assert sorted(names) == ["m.10\tName 0", "m.11\tName 1"]
    again = CliRunner().invoke(app, ["msceleb", str(a), str(b), str(tmp_path / "out")])
    assert "2 TSV files were decoded before" in again.output
    from facetrain.data.msceleb import LOCK
    from facetrain.lock import held

    with held(tmp_path / "out" / LOCK, "msceleb"):  # a second run while one decodes: refused
        busy = CliRunner().invoke(app, ["msceleb", str(a), str(tmp_path / "out")])
    assert busy.exit_code == 2 and "out is in use by process" in busy.output, busy.output


def test_progress_an_empty_tsv_and_a_damaged_record_of_progress(tmp_path, monkeypatch):
    """The decode shows its progress over the TSVs' bytes (MS-Celeb's are tens of GB: it
    showed none). An empty TSV is said to be empty (it was 'already fully decoded'), and a
    damaged msceleb_progress.json is named with the way out (it was a JSON traceback)."""
    from facetrain import progress

    a, b, expected = make_tsvs(tmp_path)
    shown = []
    real = progress.PlainProgress.advance
    monkeypatch.setattr(progress.PlainProgress, "advance",
                        lambda self, task, n=1: shown.append(n) or real(self, task, n))  # fmt: skip
    (tmp_path / "empty.tsv").write_bytes(b"")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["msceleb", str(a), str(tmp_path / "empty.tsv"), str(out)])
    assert res.exit_code == 0 and "1 TSV file was empty" in res.output, res.output
    assert sum(shown) * (1 << 20) == pytest.approx(a.stat().st_size)
    for damaged in ("{bad", '{"x": {"offset": -1, "line": 0}}'):
        (out / "msceleb_progress.json").write_text(damaged)
        res = CliRunner().invoke(app, ["msceleb", str(a), str(out)])
        assert res.exit_code == 2 and f"{out / 'msceleb_progress.json'}: " in res.output
        assert "remove it to decode every TSV again" in res.output and "Traceback" not in res.output


def test_resume_after_interruption(tmp_path, monkeypatch):
    a, b, expected = make_tsvs(tmp_path)
    out = tmp_path / "out"
    real = atomic.write_bytes
    calls = {"n": 0}

    def dying_write(path, data, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # stands in for a kill in the middle of the file
        return real(path, data, **kw)

    monkeypatch.setattr(atomic, "write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        decode_tsv([str(a), str(b)], out, commit_every=2)
    assert 0 < len(written(out)) < len(expected)
    monkeypatch.setattr(atomic, "write_bytes", real)
    counts = decode_tsv([str(a), str(b)], out, commit_every=2)
    assert written(out) == expected
    assert counts["written"] < len(expected)  # continued, did not start over
