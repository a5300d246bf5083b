"""`facetrain align` end to end: outputs, CSV, modes, shards, kill -9 and resume, bad input."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import LFW_RAW, save_rgb, tree_hash
from facetrain.cli import app
from helpers import huge_png

runner = CliRunner()


def rows(out: Path, name: str = "alignment.csv") -> list[dict]:
    with open(out / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def align_cli(*args: str):
    result = runner.invoke(app, ["align", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_similarity_mode_on_real_photos(lfw_raw_subset, tmp_path):
    out = tmp_path / "out"
    align_cli(lfw_raw_subset, out, "--workers", "1")
    r = rows(out)
    assert len(r) == 24 and all(x["status"] == "ok" for x in r)
    for x in r:
        img = Image.open(out / x["output"])
        assert img.size == (112, 112)
        lm = np.array([float(x[f"lm{i}{c}"]) for i in range(1, 6) for c in "xy"]).reshape(5, 2)
        assert lm[0, 0] < lm[1, 0]  # left eye left of right eye in a frontal photo
        assert float(x["score"]) > 0.9
    assert not list(out.rglob("*.tmp"))


def test_box_mode_and_all_faces(lfw_raw_subset, tmp_path):
    out = tmp_path / "box"
    align_cli(lfw_raw_subset, out, "--mode", "box", "--workers", "1", "--select", "all")
    r = rows(out)
    ok = [x for x in r if x["status"] == "ok"]
    assert len({x["source"] for x in ok}) == 24 and len(ok) >= 24
    assert all(x["output"].endswith(f"_{x['face']}.jpg") for x in ok)
    assert {Image.open(out / x["output"]).size for x in ok} == {(182, 182)}


def test_rerun_skips_done_and_other_settings_refused(lfw_raw_subset, tmp_path):
    out = tmp_path / "out"
    align_cli(lfw_raw_subset, out, "--workers", "1")
    again = align_cli(lfw_raw_subset, out, "--workers", "1")
    assert "24 done before" in again.output
    assert len(rows(out)) == 24
    res = runner.invoke(app, ["align", str(lfw_raw_subset), str(out), "--size", "160"])
    assert res.exit_code == 2 and "other settings" in res.output


def test_shards_partition_the_inputs(lfw_raw_subset, tmp_path):
    out = tmp_path / "out"
    for i in range(3):
        align_cli(lfw_raw_subset, out, "--workers", "1", "--shard", f"{i}/3")
    parts = [{x["source"] for x in rows(out, f"alignment-{i}-of-3.csv")} for i in range(3)]
    assert sum(len(p) for p in parts) == 24 and len(set().union(*parts)) == 24
    assert all(len(p) > 0 for p in parts)


def test_a_second_align_of_a_shard_is_refused_and_another_shard_goes_on(lfw_raw_subset, tmp_path):
    """Two aligns into one OUT each aligned what the other had left and recorded it: 976
    rows in alignment.csv for 600 photos. The second is refused, naming the first; the
    other shards of a job split across machines are not held up."""
    from facetrain.lock import held

    out = tmp_path / "out"
    align_cli(lfw_raw_subset, out, "--workers", "1", "--shard", "1/2")
    with held(out / ".alignment-0-of-2.csv.lock", "align"):  # as a first align holds it
        args = ["align", str(lfw_raw_subset), str(out), "--workers", "1", "--shard", "0/2"]
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert f"{out} (shard 0 of 2) is in use by process {os.getpid()}" in res.output
        assert not (out / "alignment-0-of-2.csv").exists()
    align_cli(lfw_raw_subset, out, "--workers", "1", "--shard", "0/2")  # once it ended
    both = rows(out, "alignment-0-of-2.csv") + rows(out, "alignment-1-of-2.csv")
    assert len(both) == len({r["source"] for r in both}) == 24  # each photo recorded once


def test_several_workers_give_the_same_rows(lfw_raw_subset, tmp_path):
    align_cli(lfw_raw_subset, tmp_path / "one", "--workers", "1")
    align_cli(lfw_raw_subset, tmp_path / "two", "--workers", "2", "--batch-size", "4")
    a = {x["source"]: x for x in rows(tmp_path / "one")}
    b = {x["source"]: x for x in rows(tmp_path / "two")}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["status"] == b[k]["status"]
        assert abs(float(a[k]["x1"]) - float(b[k]["x1"])) < 0.05


def test_kill_minus_9_then_resume(lfw_raw_subset, tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    align_cli(lfw_raw_subset, ref, "--workers", "1")
    cmd = [sys.executable, "-m", "facetrain", "align", str(lfw_raw_subset), str(out)]
    cmd += ["--workers", "1", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    csv_path = out / "alignment.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if csv_path.exists() and csv_path.read_text().count("\n") >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = csv_path.read_text().count("\n") - 1
    assert 0 < n_before < 24, "the kill should land mid-run"
    align_cli(lfw_raw_subset, out, "--workers", "1")
    r = rows(out)
    sources = [x["source"] for x in r]
    assert len(sources) == len(set(sources)) == 24  # each input exactly once
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for x in r:
        a = np.asarray(Image.open(out / x["output"]), np.float32)
        b = np.asarray(Image.open(ref / x["output"]), np.float32)
        assert np.abs(a - b).mean() < 1.0


def test_exif_rotated_photo_is_aligned_upright(tmp_path):
    if not LFW_RAW.exists():
        pytest.skip(f"{LFW_RAW} absent")
    src = next(iter(sorted(LFW_RAW.glob("*/*.jpg"))))
    upright = tmp_path / "in" / "person" / "upright.jpg"
    rotated = tmp_path / "in" / "person" / "rotated.jpg"
    upright.parent.mkdir(parents=True)
    shutil.copy(src, upright)
    exif = Image.Exif()
    exif[0x0112] = 8  # display = stored rotated 90° counter-clockwise
    Image.open(src).rotate(-90, expand=True).save(rotated, exif=exif.tobytes(), quality=95)
    align_cli(tmp_path / "in", tmp_path / "out", "--workers", "1")
    a = np.asarray(Image.open(tmp_path / "out/person/upright.jpg"), np.float32)
    b = np.asarray(Image.open(tmp_path / "out/person/rotated.jpg"), np.float32)
    assert np.abs(a - b).mean() < 12  # same face, same alignment (only JPEG loss differs)


def make_bad_tree(root: Path) -> dict[str, str]:
    """Every bad input the issue lists; returns file name → expected status."""
    d = root / "person"
    d.mkdir(parents=True)
    expected = {}
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x13" * 300)
    expected["corrupt.jpg"] = "unreadable"
    save_rgb(d / "trunc.png", 64, 64)
    data = (d / "trunc.png").read_bytes()
    (d / "trunc.png").write_bytes(data[: len(data) // 2])
    expected["trunc.png"] = "unreadable"
    (d / "zero.jpg").write_bytes(b"")
    expected["zero.jpg"] = "unreadable"
    (d / "text.jpg").write_text("not an image")
    expected["text.jpg"] = "unreadable"
    Image.new("RGB", (64, 64), (90, 120, 200)).convert("CMYK").save(d / "cmyk.jpg")
    expected["cmyk.jpg"] = "no_face"
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(d / "deep16.png")
    expected["deep16.png"] = "no_face"
    pal = Image.new("P", (64, 64), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0, 0, 0] * 254)
    pal.save(d / "palette_alpha.png", transparency=0)
    expected["palette_alpha.png"] = "no_face"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (80, 60), (10, 200, 10)).save(d / "exif.jpg", exif=exif.tobytes())
    expected["exif.jpg"] = "no_face"
    Image.new("RGB", (1, 1)).save(d / "one.png")
    expected["one.png"] = "too_small"
    huge_png(d / "huge.png", 60_000, 60_000)
    expected["huge.png"] = "too_large"
    save_rgb(d / "ünï cødé name.JPG", 48, 48)
    expected["ünï cødé name.JPG"] = "no_face"
    save_rgb(d / "UPPER.PNG", 48, 48)
    expected["UPPER.PNG"] = "no_face"
    os.symlink("..", d / "loop")
    (root / "empty person").mkdir()
    return expected


def test_bad_input_reported_run_finishes_sources_untouched(tmp_path):
    src = tmp_path / "raw"
    expected = make_bad_tree(src)
    os.chmod(src / "person" / "cmyk.jpg", 0o444)
    before = tree_hash(src)
    st = runner.invoke(app, ["stats", str(src)])
    assert st.exit_code == 0 and "empty_identity: 1" in st.output and "symlink_loop" in st.output
    res = align_cli(src, tmp_path / "out", "--workers", "1")
    got = {Path(x["source"]).name: (x["status"], x["reason"]) for x in rows(tmp_path / "out")}
    assert {k: v[0] for k, v in got.items()} == expected
    assert all(reason for status, reason in got.values() if status != "ok")
    assert "unreadable: 4" in res.output
    assert tree_hash(src) == before


def test_unusable_arguments_exit_2(tmp_path):
    for args in (
        ["align", str(tmp_path / "missing"), str(tmp_path / "o")],
        ["align", str(tmp_path), str(tmp_path / "o"), "--mode", "warp"],
        ["align", str(tmp_path), str(tmp_path / "o"), "--shard", "3/2"],
        ["align", str(tmp_path), str(tmp_path / "o"), "--thresholds", "0.6,2"],
        ["align", str(tmp_path), str(tmp_path)],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, args
        assert "error:" in res.output


def test_every_phone_format_aligned_and_the_rest_listed(tmp_path):
    """HEIC, AVIF, TIFF, an animated GIF and a camera RAW of a real face are aligned; a RAW
    that cannot be developed is in alignment.csv with its reason (an animated GIF used to
    be left out silently)."""
    import facetrain.data.images  # noqa: F401  # HEIC and AVIF registered with PIL to write them
    from helpers import write_dng

    if not LFW_RAW.exists():
        pytest.skip(f"{LFW_RAW} absent (real data not here)")
    face = Image.open(sorted(LFW_RAW.rglob("*.jpg"))[0]).convert("RGB")
    src = tmp_path / "phone" / "someone"
    src.mkdir(parents=True)
    for ext in (".heic", ".avif", ".tiff"):
        face.save(src / f"face{ext}")
    face.save(src / "face.gif", save_all=True, append_images=[face.rotate(90)], duration=50)
    write_dng(np.asarray(face), src / "IMG_0002.DNG")
    (src / "IMG_0001.CR2").write_bytes(b"II*\x00" + b"\x00" * 64)
    align_cli(tmp_path / "phone", tmp_path / "out", "--workers", "1")
    got = {Path(x["source"]).name: (x["status"], x["reason"]) for x in rows(tmp_path / "out")}
    assert {k: v[0] for k, v in got.items()} == {
        "face.heic": "ok", "face.avif": "ok", "face.tiff": "ok", "face.gif": "ok",
        "IMG_0002.DNG": "ok", "IMG_0001.CR2": "unreadable",
    }  # fmt: skip
    assert "cannot develop this RAW" in got["IMG_0001.CR2"][1]


def test_the_python_call_takes_one_root_or_a_list(lfw_raw_subset, tmp_path):
    """`run_align(ROOT, ...)` with one root as a string: it read the string one root per
    character and refused the output as 'inside the input /' (bench/align.py did this)."""
    from facetrain.align.job import AlignConfig, run_align

    one = run_align(str(lfw_raw_subset), tmp_path / "one", AlignConfig(), progress=False)
    listed = run_align([lfw_raw_subset], tmp_path / "listed", AlignConfig(), progress=False)
    assert one.faces_written == listed.faces_written == 24


def test_onnx_runtime_workers_are_spawned_and_start_after_the_parent_found_faces(tmp_path):
    """A forked worker inherits whatever lock another thread of the parent held at the fork
    (the progress bar's, the import lock): one hung for good in the suite once the workers
    imported ONNX Runtime themselves. Workers that run ONNX Runtime are spawned."""
    for k in range(4):
        save_rgb(tmp_path / "in" / "p" / f"{k}.jpg", 64, 64, seed=k)
    code = (
        "import sys, multiprocessing as mp, numpy as np\n"
        "from facetrain.align.faces import FaceAligner\n"
        "from facetrain.align.job import AlignConfig, run_align\n"
        "asked, get = [], mp.get_context\n"
        "mp.get_context = lambda m=None: asked.append(m) or get(m)\n"
        "FaceAligner({'mode': 'similarity', 'size': 112}).faces(np.zeros((64, 64, 3), np.uint8))\n"
        "s = run_align(sys.argv[1], sys.argv[2], AlignConfig(), workers=2, progress=False)\n"
        "print(sum(s.counts.values()), asked)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in"), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "4 ['spawn']"
