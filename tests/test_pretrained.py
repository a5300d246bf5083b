"""Pretrained models: dlib's ResNet ported and checked against dlib itself, the registry and
default model, the peers' checkpoint imports, and every bad input with one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import LFW_RAW
from facetrain.cli import app
from facetrain.inference import pretrained
from facetrain.inference.dlib_format import DlibFormatError, read_dat
from facetrain.inference.imports import (
    ImportError_,
    import_arcface_torch,
    import_facenet_pytorch,
    read_state_dict,
)
from facetrain.inference.pretrained import models_folder
from facetrain.inference.saved import load_model, open_model
from facetrain.models import create_model

runner = CliRunner()
DAT = (models_folder() or Path("/nonexistent")) / "dlib_face_recognition_resnet_model_v1.dat"
needs_weights = pytest.mark.skipif(not DAT.is_file(), reason="face-recognition-models absent")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test converts into its own empty cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FACETRAIN_CACHE", str(folder))
    return folder


def cached_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


@pytest.fixture(scope="module")
def dlib_faces():
    """dlib's own pipeline on the first 60 photos of lfw-raw-sample: chips and descriptors."""
    if not LFW_RAW.exists():
        pytest.skip(f"{LFW_RAW} absent (real data not here)")
    pytest.importorskip("dlib")
    from facetrain.data import iter_samples, load_rgb
    from facetrain.inference.dlib_oracle import DlibPipeline

    pipe = DlibPipeline()
    found = []
    for s in list(iter_samples(str(LFW_RAW)))[:60]:
        img = load_rgb(s.path)
        face = pipe.face(img)
        if face is not None:
            found.append((s.path, img, face))
    return found


@needs_weights
def test_port_matches_dlib_on_its_own_chips(dlib_faces):
    assert len(dlib_faces) >= 50
    net = load_model("pretrained:dlib_resnet")[0]
    chips = torch.from_numpy(np.stack([f.chip for _, _, f in dlib_faces])).permute(0, 3, 1, 2)
    with torch.no_grad():
        ours = net.embed(chips.float()).numpy()
    theirs = np.stack([f.descriptor for _, _, f in dlib_faces])
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.abs(ours - theirs).max() <= 1e-4


@needs_weights
def test_embed_command_gives_dlibs_descriptors_for_chips(dlib_faces, tmp_path):
    chips = tmp_path / "chips"
    for k, (_, _, f) in enumerate(dlib_faces[:12]):
        (chips / f"p{k % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(f.chip).save(chips / f"p{k % 3}" / f"{k:02d}.png")
    out = tmp_path / "x.npz"
    args = ["embed", "pretrained:dlib_resnet", str(chips), "--align", "never", "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    z = np.load(out)
    assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape == (12, 128)
    by_name = {Path(p).stem: e for p, e in zip(z["paths"], z["embeddings"])}
    for k, (_, _, f) in enumerate(dlib_faces[:12]):
        d = f.descriptor / np.linalg.norm(f.descriptor)
        assert np.abs(by_name[f"{k:02d}"] - d).max() <= 1e-4


@needs_weights
def test_facetrain_pipeline_agrees_with_dlibs_pipeline_on_raw_photos(dlib_faces):
    fr = __import__("facetrain").load("pretrained:dlib_resnet")
    ours = fr.embed([img for _, img, _ in dlib_faces[:30]])
    theirs = np.stack([f.descriptor / np.linalg.norm(f.descriptor) for _, _, f in dlib_faces[:30]])
    ok = np.isfinite(ours).all(1)
    assert ok.sum() >= 28
    assert np.median((ours[ok] * theirs[ok]).sum(1)) >= 0.98


@needs_weights
def test_a_standard_112_crop_is_rewarped_into_dlibs_chip(dlib_faces):
    """The shared sets' 112x112 faces: re-warped by the model's record, not detected again."""
    from facetrain.align.faces import FaceAligner
    from facetrain.align.transform import warp_similarity

    fr = __import__("facetrain").load("pretrained:dlib_resnet")
    aligner = FaceAligner({"mode": "similarity", "size": 112})
    crops, want = [], []
    for _, img, f in dlib_faces[:16]:
        found = aligner.faces(img, select="center")
        if found:
            crops.append(warp_similarity(img, found[0].landmarks, 112))
            want.append(f.descriptor / np.linalg.norm(f.descriptor))
    got = fr.embed(crops)
    assert np.isfinite(got).all()
    assert np.median((got * np.stack(want)).sum(1)) >= 0.97


@needs_weights
def test_pretrained_spec_is_a_model_everywhere(tmp_path, cache):
    m = load_model("pretrained:dlib_resnet")[0]
    assert type(m).__name__ == "DlibResNet"
    fm = open_model("pretrained:dlib_resnet")
    assert fm.pre.input_size == 150 and fm.pre.alignment["template"]
    assert len(cached_files(cache)) == 1  # converted once, then reused
    open_model("pretrained:dlib_resnet")
    assert len(cached_files(cache)) == 1
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "dlib_resnet" in r.output and "CC0" in r.output
    for e in pretrained.ENTRIES.values():  # a row with its figure, then its whole record
        assert e.lfw.split(" (")[0] in r.output and f"$ {e.measured_by}" in r.output


@needs_weights
def test_compare_without_a_model_uses_the_default_and_says_so(tmp_path):
    if not LFW_RAW.exists():
        pytest.skip("needs lfw-raw-sample")
    a = sorted(LFW_RAW.glob("*/*.jpg"))[:2]
    r = runner.invoke(app, ["compare", *map(str, a), "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert "model: pretrained:dlib_resnet (the default" in r.output
    pairs = json.loads((tmp_path / "c.json").read_text())["pairs"]
    assert len(pairs) == 1 and pairs[0]["same"] is False  # two different people


@needs_weights
def test_faces_api_finds_every_face(tmp_path):
    if not LFW_RAW.exists():
        pytest.skip("needs lfw-raw-sample")
    import facetrain

    photo = np.asarray(Image.open(sorted(LFW_RAW.glob("*/*.jpg"))[0]).convert("RGB"))
    two = np.concatenate([photo, photo[:, ::-1]], axis=1)  # the same face twice, mirrored
    faces = facetrain.load().faces(two)
    assert len(faces) >= 2
    centre = sorted(faces, key=lambda f: -f.score)[:2]
    assert np.isclose(np.linalg.norm(centre[0].embedding), 1, atol=1e-5)
    assert float(centre[0].embedding @ centre[1].embedding) > 0.8


# --- bad input: one clear error, nothing in the cache ----------------------------------


@needs_weights
@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:330] + b"\xff" * 16 + b[346:], "byte"),  # the first layer's header
        (lambda b: b[:1000] + b"\x00\x00\xc0\x7f" * 8 + b[1032:], "non-finite"),  # NaN weights
        (lambda b: b"", "empty"),
    ],
)
def test_a_damaged_dat_is_one_clear_error(tmp_path, damage, words):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(damage(DAT.read_bytes()))
    with pytest.raises(DlibFormatError, match=words):
        read_dat(bad)


@needs_weights
def test_a_shape_predictor_is_refused_by_name(cache):
    with pytest.raises(DlibFormatError, match="not dlib's face-recognition network"):
        read_dat(DAT.parent / "shape_predictor_5_face_landmarks.dat")


@needs_weights
def test_a_corrupt_weights_package_leaves_nothing_in_the_cache(tmp_path, cache, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / DAT.name).write_bytes(DAT.read_bytes()[:100_000])
    monkeypatch.setattr("facetrain.inference.pretrained.models_folder", lambda: folder)
    r = runner.invoke(app, ["compare", "a.jpg", "b.jpg"])
    assert r.exit_code == 2
    assert "error:" in r.output and "truncated" in r.output and "Traceback" not in r.output
    assert cached_files(cache) == []


def test_a_missing_weights_package_names_it(cache, monkeypatch, tmp_path):
    monkeypatch.setattr("facetrain.inference.pretrained.models_folder", lambda: None)
    (tmp_path / "x.bin").write_bytes(b"a verification set")  # read after the model
    r = runner.invoke(app, ["eval", "pretrained:dlib_resnet", "--bin", str(tmp_path / "x.bin")])
    assert r.exit_code == 2 and "face-recognition-models" in r.output
    assert cached_files(cache) == []


@needs_weights
def test_a_reinstalled_package_reuses_its_conversion(tmp_path, cache, monkeypatch):
    """The cache is keyed by the weights' content: a package reinstalled (same bytes, a new
    modification time) finds its conversion; other bytes are converted anew."""
    import os

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(DAT, folder / DAT.name)
    monkeypatch.setattr("facetrain.inference.pretrained.models_folder", lambda: folder)
    first = pretrained.path("dlib_resnet")
    os.utime(folder / DAT.name, (1e9, 1e9))  # as after `pip install --force-reinstall`
    assert pretrained.path("dlib_resnet") == first and len(cached_files(cache)) == 1
    (folder / DAT.name).write_bytes(DAT.read_bytes()[:-1] + b"\x01")  # one byte changed
    assert pretrained.path("dlib_resnet") != first and len(cached_files(cache)) == 2


CONVERTER = """
import dataclasses, os, sys, time
from facetrain.inference import pretrained

entry = pretrained.ENTRIES["dlib_resnet"]

def make(out):
    with open(sys.argv[2], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.0)  # long enough for the others to find it missing too
    return entry.make(out)

pretrained.ENTRIES["dlib_resnet"] = dataclasses.replace(entry, make=make)
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # all start together
print(pretrained.path("dlib_resnet"))
"""


@needs_weights
def test_processes_started_together_convert_once(cache, tmp_path):
    """A pool's workers on a first use each converted dlib's weights; one does now, the
    others wait for it, and no lock file is left in the cache."""
    from helpers import started_together

    paths, converters = started_together(CONVERTER, cache, tmp_path / "converted.log")
    assert len(paths) == 1 and len(converters) == 1, converters  # one converted, two waited
    assert [str(p) for p in cached_files(cache)] == list(paths)


def test_a_conversion_cut_short_in_the_cache_is_made_again(cache):
    """A converted file damaged on disk (cut short by a full disk, a copy) failed every
    later use of the model ("not a safetensors weights file", naming a cache file the owner
    never made) until it was found and deleted; it is converted again instead."""
    from facetrain.inference.saved import open_model

    first = pretrained.path("facetrain_distilled")
    whole = first.read_bytes()
    for damaged in (whole[:5000], whole[:-1000], b"garbage"):
        first.write_bytes(damaged)
        assert pretrained.path("facetrain_distilled") == first
        assert first.read_bytes() == whole
    assert open_model("pretrained:facetrain_distilled").pre.embedding_size == 128


def test_an_unknown_pretrained_name_lists_the_known_ones():
    r = runner.invoke(app, ["embed", "pretrained:vgg_face", "dir", "--out", "x.npz"])
    assert r.exit_code == 2
    assert "unknown pretrained model 'vgg_face'" in r.output and "dlib_resnet" in r.output


# --- imports from the peers' checkpoints -------------------------------------------------


def _randomise_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_import_facenet_pytorch_matches_their_model(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    theirs = InceptionResnetV1(pretrained=None, classify=False, num_classes=7)
    _randomise_bn(theirs)
    theirs.eval()
    torch.save(theirs.state_dict(), tmp_path / "vggface2.pt")
    r = runner.invoke(
        app,
        ["import", "facenet-pytorch", str(tmp_path / "vggface2.pt"), "--out", str(tmp_path / "m")],
    )
    assert r.exit_code == 0, r.output
    fm = open_model(tmp_path / "m")
    assert fm.pre.input_size == 160 and fm.pre.alignment["mode"] == "box"
    x = torch.randn(3, 3, 160, 160)
    with torch.no_grad():
        assert (fm.embed(x) - theirs(x)).abs().max() <= 1e-5


def _arcface_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """facetrain iresnet names spelled as arcface_torch's backbone.pth spells them."""
    stem = {"stem.0": "conv1", "stem.1": "bn1", "stem.2": "prelu"}
    body = ["bn1", "conv1", "bn2", "prelu", "conv2", "bn3"]
    out = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[0] == "stem":
            name = f"{stem['.'.join(parts[:2])]}.{'.'.join(parts[2:])}"
        elif parts[0] == "stages":
            layer, block = int(parts[1]) + 1, parts[2]
            part = body[int(parts[4])] if parts[3] == "body" else f"downsample.{parts[4]}"
            name = f"layer{layer}.{block}.{part}.{'.'.join(parts[5:])}"
        else:
            name = k
        out[name] = v
    return out


def test_import_arcface_torch_matches_the_same_weights(tmp_path):
    torch.manual_seed(0)
    src = create_model("iresnet18", 512)
    _randomise_bn(src)
    src.eval()
    torch.save({f"module.{k}": v for k, v in _arcface_layout(src.state_dict()).items()},
               tmp_path / "backbone.pth")  # fmt: skip
    out = import_arcface_torch(tmp_path / "backbone.pth", tmp_path / "r18.safetensors", "iresnet18")
    fm = open_model(out)
    assert fm.pre.normalize == "arcface" and fm.pre.input_size == 112
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert (fm.embed(x) - src.embed(x)).abs().max() <= 1e-5


def test_a_checkpoint_of_the_wrong_architecture_names_the_key(tmp_path):
    torch.manual_seed(0)
    sd = _arcface_layout(create_model("iresnet18", 512).state_dict())
    torch.save(sd, tmp_path / "r18.pth")
    with pytest.raises(ImportError_, match=r"does not fit the architecture: missing \d+ \(e.g. "):
        import_arcface_torch(tmp_path / "r18.pth", tmp_path / "x.safetensors", "iresnet50")
    sd["fc.weight"] = sd["fc.weight"][:, :100]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(ImportError_, match=r"fc.weight is \[512, 100\] there, \[512, 25088\] here"):
        import_arcface_torch(tmp_path / "cut.pth", tmp_path / "x.safetensors", "iresnet18")
    assert not (tmp_path / "x.safetensors").exists()


def test_a_pickled_object_is_never_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    torch.save({"w": torch.zeros(1), "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ImportError_, match="not a weights-only PyTorch checkpoint") as e:
        read_state_dict(tmp_path / "evil.pt")
    assert (tmp_path / "victim").is_dir()
    # torch's reason, not its advice to load the file unsafely (weights_only=False)
    assert "Unsupported global" in str(e.value) and "weights_only" not in str(e.value)
    (tmp_path / "junk.pt").write_bytes(b"")
    with pytest.raises(ImportError_, match="not a file torch.save wrote"):
        read_state_dict(tmp_path / "junk.pt")
    with pytest.raises(ImportError_, match="no last_linear.weight"):
        torch.save({"w": torch.zeros(1)}, tmp_path / "other.pt")
        import_facenet_pytorch(tmp_path / "other.pt", tmp_path / "y.safetensors")


def test_pretrained_entries_list_what_users_need():
    for name in pretrained.names():
        e = pretrained.entry(name)
        assert e.licence and e.source and e.measured_by.startswith("facetrain eval")


@needs_weights
def test_fine_tuning_from_a_pretrained_model_must_feed_it_as_it_was_trained(tmp_path):
    from facetrain.data.packed import pack
    from facetrain.train.loop import TrainingError, train
    from helpers import make_faces, small_cfg

    pack(str(make_faces(tmp_path / "faces", ids=4, per=5)), tmp_path / "pack", progress=False)
    cfg = small_cfg(tmp_path / "pack", tmp_path / "r", model="dlib_resnet", embedding_size=128,
                    init_from="pretrained:dlib_resnet")  # fmt: skip
    with pytest.raises(TrainingError, match=r"normalize='none'.*--set normalize=none"):
        train(cfg, log=lambda *_: None)
    cfg.data.normalize, cfg.model.input_size = "none", 150
    with pytest.raises(TrainingError, match="facetrain rewarp"):  # 112 crops, not dlib's chip
        train(cfg, log=lambda *_: None)


def test_balanced_scales_make_every_dlib_filter_unit_size():
    if not DAT.is_file():
        pytest.skip("face-recognition-models absent")
    net = load_model("pretrained:dlib_resnet")[0]
    for name, p in net.named_parameters():
        if "conv" in name and name.endswith("weight"):
            rms = p.detach().flatten(1).pow(2).mean(1).sqrt()
            assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4), name


@needs_weights
def test_a_library_scan_without_a_model_uses_the_default(photos, tmp_path):
    db = tmp_path / "lib.db"
    r = runner.invoke(app, ["library", "scan", str(photos), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "model: pretrained:dlib_resnet" in r.output
    r = runner.invoke(app, ["library", "cluster", "--db", str(db)])
    assert r.exit_code == 0 and "stacks" in r.output
    from facetrain.library.library import Library

    with Library(db) as lib:
        assert lib.model().pre.model == "dlib_resnet"  # the library remembers its model
        assert len(lib.people()) >= 3  # amy, howard, penny (and the group photos' faces)


@pytest.mark.parametrize(
    "name, shape",
    [
        ("facetrain_scratch", ("nn4_small2_bn", 80, 512)),
        ("facetrain_distilled", ("nn4_small2", 80, 128)),
    ],
)
def test_a_shipped_model_tells_people_apart(name, shape):
    """pretrained:facetrain_scratch (issue 17) and facetrain_distilled (issue 16): listed,
    opened from the weights inside facetrain, their own record (input, size, calibrated
    threshold); on LFW pairs of its first fold each separates same from different people
    far better than chance (the full figures: `facetrain eval pretrained:NAME ...`, in
    docs/benchmarks.md)."""
    from conftest import SHARED
    from facetrain.evaluate.verification import read_pairs
    from facetrain.inference.feed import embed_model
    from facetrain.inference.sources import Images

    assert name in runner.invoke(app, ["models"]).output
    fm = open_model(f"pretrained:{name}")
    assert (fm.pre.model, fm.pre.input_size, fm.pre.embedding_size) == shape
    assert fm.pre.threshold is not None and fm.source == f"pretrained:{name}"
    lfw = SHARED / "lfw"
    if not lfw.exists():
        pytest.skip(f"{lfw} absent (real data not here)")
    pairs = read_pairs(lfw / "pairs.txt", lfw)
    first = np.flatnonzero(pairs.fold == pairs.fold[0])  # 300 same, 300 different
    paths = [p for k in first for p in (pairs.path1[k], pairs.path2[k])]
    emb = embed_model(fm, Images(paths, fm.pre.alignment))
    d = ((emb[0::2] - emb[1::2]) ** 2).sum(1)
    assert np.mean((d < fm.pre.threshold) == pairs.issame[first]) > 0.85


def test_a_model_file_whose_record_disagrees_with_its_weights_names_the_tensor(tmp_path):
    """A model file that says 32-d but holds a 128-d model's weights is refused in one line
    naming the tensor (torch's error listed every key)."""
    from facetrain.inference.record import ModelFileError, Preprocess, save_model

    pre = Preprocess(model="nn4_small2", embedding_size=32, input_size=96)
    save_model(tmp_path / "m.safetensors", create_model("nn4_small2", 128), pre)
    with pytest.raises(
        ModelFileError,
        match=r"m.safetensors: weights do not fit its record's "
        r"nn4_small2: linear.weight is \[128, 736\] there, \[32, 736\] here",
    ):
        open_model(tmp_path / "m.safetensors")
