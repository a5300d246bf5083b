"""Inference without torch: the detector's ONNX networks and a compiled pretrained model
compute what their PyTorch selves compute, the everyday commands import no torch once
compiled, and everything falls back to PyTorch when the runtime cannot be used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import LFW_RAW, SHARED, need
from facetrain.data import iter_samples, load_rgb

PHOTOS = SHARED / "photos"


def test_the_onnx_networks_are_the_pytorch_ones_with_torchvisions_roi_align():
    """R-Net and O-Net take an image level and boxes: ONNX Runtime's RoiAlign must sample
    the boxes as torchvision's roi_align does, and P-Net must see the same pixels."""
    from facetrain.align.detector import load_nets
    from facetrain.align.nets import as_numpy, pixel_nets

    onnx_nets = load_nets("cpu")
    torch_nets = [as_numpy(n, "cpu") for n in pixel_nets("cpu")]
    g = np.random.default_rng(0)
    level = (g.random((2, 3, 57, 81)) * 255).astype(np.float32)
    xy = g.random((300, 2)) * [80, 56]
    ends = np.minimum(xy + g.random((300, 1)) * 60 + 0.5, [81, 57])
    rois = np.concatenate([g.integers(0, 2, (300, 1)), xy, ends], 1).astype(np.float32)
    for ours, theirs, args in zip(onnx_nets, torch_nets, [(level,), (level, rois), (level, rois)]):
        for a, b in zip(ours(*args), theirs(*args)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=2e-5)


def test_the_pyramid_resamples_as_torch_area_interpolation_and_nms_as_torchvision():
    from torchvision.ops import batched_nms as tv_batched_nms

    from facetrain.align.detector import _resized, batched_nms

    g = np.random.default_rng(1)
    imgs = (g.random((2, 3, 97, 131)) * 255).astype(np.float32)
    for size in ((97, 131), (60, 80), (49, 66), (71, 93)):
        want = torch.nn.functional.interpolate(torch.from_numpy(imgs), size=size, mode="area")
        np.testing.assert_allclose(_resized(imgs, size), want.numpy(), atol=1e-3)
    xy = g.random((200, 2)) * 150
    boxes = np.concatenate([xy, xy + g.random((200, 1)) * 60 + 1], 1).astype(np.float32)
    scores, groups = g.random(200).astype(np.float32), g.integers(0, 3, 200)
    for thr in (0.3, 0.5, 0.7):
        want = tv_batched_nms(*map(torch.from_numpy, (boxes, scores, groups)), thr)
        assert batched_nms(boxes, scores, groups, thr).tolist() == want.tolist()


@need(PHOTOS)
def test_the_runtime_detector_finds_what_the_pytorch_networks_find(monkeypatch):
    from facetrain.align.detector import MTCNN

    paths = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[::6]
    images = [load_rgb(p) for p in paths[:25]]
    ours = MTCNN().detect(images)
    monkeypatch.setenv("FACETRAIN_RUNTIME", "torch")
    theirs = MTCNN().detect(images)
    assert sum(len(f) for f in ours) >= 25
    for a, b in zip(ours, theirs):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)


@need(LFW_RAW)
@pytest.mark.parametrize("name", ["dlib_resnet", "facetrain_scratch", "facetrain_distilled"])
def test_a_compiled_pretrained_model_embeds_as_its_pytorch_self(name, tmp_path, monkeypatch):
    from facetrain.inference.compiled import model_hash, open_compiled
    from facetrain.inference.embedder import FaceEmbedder
    from facetrain.inference.saved import open_model

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path))  # this code's graph, never a cached one
    spec = f"pretrained:{name}"
    fast, slow = open_compiled(spec), open_model(spec)
    assert fast is not None and fast.backend == "onnxruntime" and slow.backend == "torch"
    assert fast.pre == slow.pre and model_hash(fast) == model_hash(slow)
    photos = [load_rgb(s.path) for s in list(iter_samples(str(LFW_RAW)))[:12]]
    a, b = FaceEmbedder(fast).embed(photos), FaceEmbedder(slow).embed(photos)
    assert np.isfinite(a).all() and a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4)
    faces = FaceEmbedder(fast).faces(photos[0])
    assert faces and np.allclose(np.linalg.norm(faces[0].embedding), 1, atol=1e-5)


def _run(code: str, env: dict | None = None) -> str:
    import os

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


@need(LFW_RAW)
def test_verify_imports_no_torch_once_compiled_and_compiles_again_when_the_cache_is_damaged(
    tmp_path,
):
    a, b = sorted((LFW_RAW / "Ariel_Sharon").glob("*.jpg"))[:2]
    env = {"FACETRAIN_CACHE": str(tmp_path / "cache")}
    code = (f"import sys, facetrain; r = facetrain.verify({str(a)!r}, {str(b)!r}); "
            "print(r['verified'], round(r['distance'], 4), 'torch' in sys.modules)")  # fmt: skip
    first = _run(code, env)  # compiles: PyTorch traces the graphs once
    assert (tmp_path / "cache" / "runtime").is_dir()
    again = _run(code, env)
    assert first.split()[:2] == again.split()[:2] and first.split()[0] == "True"
    assert again.split()[2] == "False", again  # no torch in the process
    forced = _run(code, {**env, "FACETRAIN_RUNTIME": "torch"})
    assert forced.split()[2] == "True"
    assert abs(float(forced.split()[1]) - float(again.split()[1])) < 1e-3
    # damaged on disk (a record edited, a graph cut short): made again, not a traceback in
    # every later command until the owner finds the cache and clears it
    (record,) = (tmp_path / "cache" / "runtime").glob("dlib_resnet*/model.json")
    record.write_text("{bad")
    (onet,) = (tmp_path / "cache" / "runtime").glob("mtcnn*/onet.ort")
    onet.write_bytes(onet.read_bytes()[:1000])
    mended = _run(code, env)
    assert mended.split()[:2] == again.split()[:2], mended
    assert _run(code, env).split() == again.split()  # and torch-free again


def test_an_unwritable_cache_falls_back_to_pytorch_and_a_bad_setting_is_refused(
    tmp_path, monkeypatch
):
    from facetrain import runtime
    from facetrain.errors import FacetrainError
    from facetrain.inference.compiled import open_for_use

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("FACETRAIN_CACHE", str(blocked / "cache"))  # under a file: no cache
    made: list = []
    assert runtime.compiled("x", ["a.onnx"], made.append) is None and not made
    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path / "cache"))
    assert runtime.compiled("x", ["a.onnx"], lambda f: (f / "a.onnx").write_text("g")) is not None
    assert made == [] and (tmp_path / "cache" / "runtime").is_dir()
    monkeypatch.setenv("FACETRAIN_RUNTIME", "torch")
    assert open_for_use("pretrained:dlib_resnet").backend == "torch"
    monkeypatch.setenv("FACETRAIN_RUNTIME", "fast")
    with pytest.raises(FacetrainError, match="FACETRAIN_RUNTIME"):
        runtime.enabled()


MAKER = """
import os, sys, time
from pathlib import Path
from facetrain import runtime

def make(folder):
    with open(sys.argv[2], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.0)  # long enough for the other processes to find the entry missing too
    (folder / "a.onnx").write_text(f"graph of {os.getpid()}")

time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # all start together
print(runtime.compiled("shared", ["a.onnx"], make))
"""


def test_processes_that_find_a_cache_entry_missing_together_make_it_once(tmp_path):
    """A pool's workers each finding the compiled model missing each traced it, replacing the
    file under one another: a worker's ONNX Runtime then read a graph whose size had changed
    and failed ('Only 22665728/22665736 bytes were able to be read'). One makes it now."""
    from helpers import started_together

    folders, makers = started_together(MAKER, tmp_path / "cache", tmp_path / "made.log")
    assert len(makers) == 1, makers  # one maker, two waited
    (folder,) = folders
    assert Path(folder, "a.onnx").read_text() == f"graph of {makers[0]}"


def test_graphs_are_saved_for_this_cpu_and_another_cpu_gets_its_own(tmp_path, monkeypatch, request):
    """The saved graphs are fully optimised: on a CPU with AVX, convolutions in ONNX
    Runtime's NCHWc blocks (a file another CPU may not run), so the cache folder is named
    by the CPU as well as the runtime's version; the optimised graph computes what the
    module computes."""
    import platform

    from facetrain import runtime

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path))
    net = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3), torch.nn.ReLU()).eval()

    def make(folder):
        runtime.trace(net, (torch.zeros(1, 16, 9, 9),), folder / "g.ort", ["x"], ["y"],
                      {"x": {0: "n", 2: "h", 3: "w"}})  # fmt: skip

    here = runtime.compiled("conv", ["g.ort"], make)
    assert here.name.endswith(runtime.cpu_key())
    x = np.random.default_rng(0).random((2, 16, 20, 30), np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runtime.session(here / "g.ort").run(None, {"x": x})[0], want,
                               atol=1e-5)  # fmt: skip
    info = Path("/proc/cpuinfo")
    cpu = info.read_text() if info.is_file() else ""
    if platform.machine() == "x86_64" and " avx2" in cpu:
        assert b"ReorderInput" in (here / "g.ort").read_bytes()  # NCHWc: laid out for the CPU
    monkeypatch.setattr(platform, "machine", lambda: "another-cpu")
    runtime.cpu_key.cache_clear()
    request.addfinalizer(runtime.cpu_key.cache_clear)  # after monkeypatch's undo: this CPU
    there = runtime.compiled("conv", ["g.ort"], make)
    assert there != here and (there / "g.ort").is_file() and (here / "g.ort").is_file()


def test_the_traced_prelu_is_prelu_to_the_last_bit_and_padding_changes_nothing(tmp_path):
    """MTCNN's nets are traced with PReLU rewritten for ONNX Runtime's block layout and
    R-Net's first layer padded to whole blocks; both must leave the function as it is, so
    that the faces found do not move."""
    from facetrain import runtime
    from facetrain.align.nets import TracedPReLU, _blocked, pixel_nets

    g = torch.Generator().manual_seed(0)
    prelu = torch.nn.PReLU(28)
    with torch.no_grad():
        prelu.weight.copy_(torch.randn(28, generator=g))  # negative and > 1 slopes too
    x = torch.randn(3, 28, 11, 13, generator=g) * 5
    for blocks in (True, False):
        assert torch.equal(TracedPReLU(prelu, blocks)(x), prelu(x))
    assert torch.equal(TracedPReLU(prelu)(x[:, :, 0, 0]), prelu(x[:, :, 0, 0]))

    rnet = pixel_nets("cpu", channels_last=False)[1].net
    c1, p1, c2 = _blocked(rnet.conv1, rnet.prelu1, rnet.conv2)
    assert c1.out_channels == 32 and c2.in_channels == 32
    crops = torch.rand(4, 3, 24, 24, generator=g) * 2 - 1
    with torch.no_grad():
        plain = rnet.conv2(rnet.prelu1(rnet.conv1(crops)))
        padded = c2(p1(c1(crops)))
    torch.testing.assert_close(padded, plain, rtol=1e-6, atol=1e-6)

    # and as ONNX Runtime runs them: each rewritten graph against the plain one
    from facetrain.align.nets import trace_nets
    from facetrain.align.weights import NET_FILES

    for name, rewrite in (("ours", True), ("plain", False)):
        (tmp_path / name).mkdir()
        trace_nets(tmp_path / name, rewrite)
    level = (torch.rand(1, 3, 90, 120, generator=g) * 255).numpy()
    xy = torch.rand(200, 2, generator=g).numpy() * [100, 70]
    rois = np.concatenate([np.zeros((200, 1)), xy, xy + 10 + 40 * np.random.default_rng(1).random(
        (200, 1))], 1).astype(np.float32)  # fmt: skip
    for name, feed in zip(NET_FILES, [{"x": level}] + [{"x": level, "rois": rois}] * 2):
        ours = runtime.session(tmp_path / "ours" / name).run(None, feed)
        theirs = runtime.session(tmp_path / "plain" / name).run(None, feed)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_a_new_cache_entry_removes_those_unused_for_months(tmp_path, monkeypatch):
    """The cache folder does not grow with every upgrade: making a runtime graph, a
    converted model or a folder's `find` table removes its neighbours unused for
    `cache.STALE_DAYS` (an older version's, a folder no longer searched); one used since —
    by another installed version, say — stays, as does anything recent, and a link goes
    without what it points at."""
    import os
    import time

    from facetrain import cache, runtime
    from facetrain.inference import pretrained
    from facetrain.use.find_cache import FolderCache

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path))
    long_ago = time.time() - (cache.STALE_DAYS + 1) * 86400

    def made(path: Path, old: bool) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        for p in (path, path.parent):
            os.utime(p, (long_ago, long_ago) if old else None)
        return path

    rt = tmp_path / "runtime"
    stale = made(rt / "x-r1-ort1.0-cpu" / "a.onnx", old=True).parent
    here = f"x-r{runtime.VERSION}-ort{runtime.ort_version()}-{runtime.cpu_key()}"
    in_use = made(rt / here / "a.onnx", old=True).parent  # this version's, used just now:
    (in_use / runtime.MADE).write_text('{"a.onnx": 1}')  # made whole ("x": one byte)
    os.utime(in_use, (long_ago, long_ago))
    assert runtime.compiled("x", ["a.onnx"], lambda f: pytest.fail("made again")) == in_use
    recent = made(rt / "y-r1-ort1.0-cpu" / "a.onnx", old=False).parent
    new = runtime.compiled("z", ["a.onnx"], lambda f: (f / "a.onnx").write_text("g"))
    assert sorted(p.name for p in rt.iterdir()) == sorted([here, recent.name, new.name])
    assert not stale.exists()

    old_weights = made(tmp_path / "pretrained" / "dlib_resnet-v1-0-0.safetensors", old=True)
    kept = pretrained.path("pretrained:facetrain_distilled")  # converted now
    assert kept.is_file() and not old_weights.exists()

    outside = made(tmp_path / "elsewhere" / "photo-list.txt", old=True)
    old_table = made(tmp_path / "find" / "old.npz", old=True)
    link = tmp_path / "find" / "gone.npz"
    link.symlink_to(outside)
    os.utime(link, (long_ago, long_ago), follow_symlinks=False)
    table = FolderCache.open("model", tmp_path / "elsewhere", 4)
    table.missing([str(outside)])
    table.put({str(outside): (np.ones((1, 4), np.float32), np.zeros((1, 4), np.float32))})
    table.save([str(outside)])
    assert sorted(p.name for p in (tmp_path / "find").iterdir()) == [table.path.name]
    assert outside.read_text() == "x" and not old_table.exists()


def test_a_session_once_made_is_not_held_for_the_exit():
    """Only sessions still being made are waited for at exit: one made is not kept there
    (a process opening models again and again, the API's or the web page's, would hold
    every session it ever made)."""
    import time

    from facetrain.inference import compiled

    fm = compiled.open_compiled("pretrained:dlib_resnet")
    assert fm is not None and fm.session is not None
    for _ in range(100):  # the callback runs just after the result is set
        if fm._loading not in compiled._MAKING:
            break
        time.sleep(0.01)
    assert fm._loading not in compiled._MAKING


def test_a_command_that_ends_before_its_model_loads_ends_cleanly(tmp_path):
    """The model's session is made in a thread while the photos are listed; a command that
    needs no face embedded (a scan of an empty folder, identify of a folder with no photo)
    ended before it was made, and the process aborted (exit 134, "terminate called without
    an active exception") after printing its report."""
    (tmp_path / "empty").mkdir()
    db = tmp_path / "lib.db"
    for args in (["scan", "empty", "--db", db], ["identify", "empty", "--db", db]):
        r = subprocess.run([sys.executable, "-m", "facetrain", "library", *map(str, args)],
                           cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0 and "terminate" not in r.stderr, (r.returncode, r.stderr)
