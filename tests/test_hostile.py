"""Findings of the hostile-use probe (../shared/notes/hostile-findings.md) reproduced and
now refused with one clear line (exit 2), without writing anything. The number is the
finding's."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrain.cli import app
from helpers import make_faces, make_model

runner = CliRunner()


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("h") / "faces", ids=3, per=3)


def run(*args) -> tuple[int, str]:
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


def _a_file(t):
    (t / "afile").write_text("the user's file")
    return t / "afile"


def _link_to_null(t):
    """m.onnx, a link to /dev/null: renamed over, the device had become a file (as root)."""
    (t / "m.onnx").symlink_to("/dev/null")
    return t / "m.onnx"


def _npz_of(t, meta: str):
    """An .npz with a classifier's arrays whose `meta` is `meta` (not a table of settings)."""
    import numpy as np

    np.savez(
        t / "c.npz", meta=np.array(meta), embeddings=np.zeros((2, 4)), labels=np.array(["a", "b"])
    )
    return t / "c.npz"


_MODEL: list[Path] = []


def _model(t):
    """A small model file (made once for the module, outside every case's inputs)."""
    if not _MODEL:
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="hostile-model-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # 15 MB a run otherwise
        _MODEL.append(make_model(Path(folder) / "m.safetensors"))
    return _MODEL[0]


def _pairs(t):
    (t / "pairs.txt").write_text("1 1\nid0\t0\t1\nid0\t0\tid1\t0\n")
    return t / "pairs.txt"


def _pairs_elsewhere(t):
    """A well-formed pairs file of two folds whose people are not in the faces given."""
    (t / "pairs.txt").write_text("2 1\nAnn\t1\t2\nAnn\t1\tBob\t1\nCy\t1\t2\nCy\t1\tBob\t2\n")
    return t / "pairs.txt"


def _with_unknown(f, t):
    """A copy of the faces with one person's folder called `Unknown`."""
    import shutil

    shutil.copytree(f, t / "people")
    (t / "people" / "id0").rename(t / "people" / "Unknown")
    return t / "people"


def _empty_folder(t):
    (t / "nobody").mkdir()
    return t / "nobody"


def _people(f, t, keep: int, photos: int):
    """A copy of the first `keep` people of the faces, with `photos` photos each."""
    import shutil

    for who in sorted(p.name for p in f.iterdir() if p.is_dir())[:keep]:
        (t / "people" / who).mkdir(parents=True)
        for photo in sorted((f / who).iterdir())[:photos]:
            shutil.copy(photo, t / "people" / who)
    return t / "people"


def _garbage_rec(t):
    (t / "train.rec").write_bytes(b"garbage, not records")
    (t / "train.idx").write_text("0\t0\n")
    return t / "train.rec"


def _a_tsv(t):
    (t / "part.tsv").write_text("m.01\tName\t1\turl\tpage\tbm90IGFuIGltYWdl\n")
    return t / "part.tsv"


def _users_folder(t):
    (t / "mine").mkdir(exist_ok=True)
    (t / "mine" / "notes.txt").write_text("the user's file")
    return t / "mine"


CASES = [
    # req 5: outputs inside an input, or in a folder of the user's
    (lambda f, t: ("pack", f, f), "inside the input"),
    (lambda f, t: ("pack", f, f / "packed"), "inside the input"),
    (lambda f, t: ("split", f, f), "inside the input"),
    (lambda f, t: ("align", f, f / "aligned"), "inside the input"),
    (lambda f, t: ("pack", f, _users_folder(t)), "not empty and not a pack folder"),
    (lambda f, t: ("split", f, _users_folder(t)), "not empty and not a split folder"),
    (lambda f, t: ("align", f, _users_folder(t)), "not empty and not an aligned-faces folder"),
    (lambda f, t: ("msceleb", _a_tsv(t), _users_folder(t)),
     "not empty and not a decoded MS-Celeb folder"),
    # 12: an output folder that exists as a file
    (lambda f, t: ("pack", f, _a_file(t)), "is a file; the output here is a folder"),
    (lambda f, t: ("pack", f, t / "p", "--images-per-shard", "0"), "at least 1"),
    (lambda f, t: ("prune", f, t / "kept.txt", "--min-images", "0"), "at least 1"),
    # an empty list written, which split then split into two empty lists, in silence
    (lambda f, t: ("prune", f, t / "kept.txt", "--min-images", "1000"),
     "no identity has 1,000 images or more (the most has 3); nothing written"),
    (lambda f, t: ("split", _empty_folder(t), t / "sp"), "nobody: no images to split"),
    (lambda f, t: ("msceleb", t / "out"), "give one or more TSV files and then the output"),
    (lambda f, t: ("msceleb", t / "a.tsv", t / "out"), "a.tsv: no such TSV file"),
    (lambda f, t: ("recordio", _garbage_rec(t), t / "out"),
     "train.rec: its first record cannot be read (bad magic"),
    (lambda f, t: ("split", f, _a_file(t)), "is a file; the output here is a folder"),
    (lambda f, t: ("align", f, _a_file(t)), "is a file; the output here is a folder"),
    # 5: filter's list overwritten by its own report
    (lambda f, t: ("filter", f, "--out", t / "same.csv", "--report", t / "same.csv"),
     "--out and --report are the same file"),
    # 7, 26: a non-finite learning rate
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--lr", "nan"), "lr = nan"),
    # a run folder inside the data: refused before it is made (its pack was refused, after)
    (lambda f, t: ("train", "--data", f, "--out", f / "run"), "inside the input"),
    # weights to start from that are not there: refused before the run folder is made
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", f"init_from={t / 'no.pt'}"),
     "no.pt: no such weights file or run folder"),
    # data that is not there: refused before the run folder is made (it was left behind)
    (lambda f, t: ("train", "--data", t / "nope", "--out", t / "r"),
     "nope: no such folder or list file"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--lr", "inf"), "lr = inf"),
    # 14: settings that crashed deep inside training
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "log_every=0"),
     "log_every = 0"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "threads=-4"),
     "threads = -4"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "input_size=5"),
     "input_size = 5"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "input_size=16"),
     "input_size 16 is too small for"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "eval_bins=nope.bin"),
     "verification set nope.bin: no such .bin file"),
    (lambda f, t: ("eval", "--pairs", t / "pairs.txt", "--images", f), "pairs.txt: no such pairs"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", f"eval_pairs={_pairs(t)}"),
     "eval_pairs and eval_images go together"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", f"eval_images={f}"),
     "eval_pairs and eval_images go together"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "schedule=file"),
     "schedule=file and schedule_file=PATH go together"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "schedule=file", "--set",
                   f"schedule_file={t / 'lr.txt'}"), "lr.txt: No such file"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "schedule=file", "--set",
                   f"schedule_file={_a_file(t)}"), "afile:1: expected 'epoch: learning_rate'"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", f"eval_pairs={_pairs(t)}",
                   "--set", f"eval_images={t / 'lfw'}"), "lfw: no such image folder"),
    (lambda f, t: ("eval", "--bin", t / "agedb.bin"), "agedb.bin: no such .bin file"),
    # a pairs file over another folder: found before training, not after its first epoch
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set",
                   f"eval_pairs={_pairs_elsewhere(t)}", "--set", f"eval_images={f}"),
     "Ann_0001.jpg, and 5 more)"),
    (lambda f, t: ("eval", "--pairs", _pairs_elsewhere(t), "--images", f),
     "pairs.txt: none of its pairs has its images in"),
    (lambda f, t: ("plot", t / "runs" / "a"), "a: no such run folder"),
    (lambda f, t: ("report", t / "runs" / "a"), "a: no such run folder"),
    # 16: align --detect-max-side 0
    (lambda f, t: ("align", f, t / "al", "--detect-max-side", "0"), "--detect-max-side 0"),
    (lambda f, t: ("align", f, t / "al", "--batch-size", "0"), "--batch-size 0: at least 1"),
    # a face of 100,000 pixels a side: 30 GB asked of OpenCV, a worker's traceback
    (lambda f, t: ("align", f, t / "al", "--size", "100000"), "--size 100000: from 16 to 1024"),
    (lambda f, t: ("align", f, t / "al", "--mode", "box", "--margin", "nan"), "--margin nan"),
    # 21: a device that is no device, for every command
    (lambda f, t: ("compare", "a.jpg", "b.jpg", "--device", "bogus"), "--device 'bogus'"),
    (lambda f, t: ("embed", f, "--out", t / "e.npz", "--device", "cuda:5"), "--device cuda:5"),
    # 38: a non-finite threshold
    (lambda f, t: ("compare", "a.jpg", "b.jpg", "--threshold", "nan"), "--threshold nan"),
    (lambda f, t: ("compare", "a.jpg", "b.jpg", "--threshold", "60"), "faces would be one"),
    # 40: --set out contradicting --out
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "out=elsewhere"),
     "contradicts --out"),
    (lambda f, t: ("train", "--data", f, "--out", t / "r", "--set", "epochs"),
     "--set 'epochs': expected KEY=VALUE"),
    # req 5: a file output that is an input, inside an input folder, or another output
    (lambda f, t: ("compare", _model(t), f / "id0" / "0.jpg", f / "id1" / "0.jpg", "--json",
                   f / "id0" / "0.jpg"), "it would be overwritten"),
    (lambda f, t: ("embed", _model(t), f, "--out", f / "e.npz"), "it would mix with the data"),
    (lambda f, t: ("classify", "train", _model(t), f, "--out", f / "id0" / "0.jpg"),
     "it would mix with the data"),
    (lambda f, t: ("classify", "train", _model(t), f, "--out", t / "c.npz", "--json",
                   t / "c.npz"), "--out and --json are the same file"),
    (lambda f, t: ("classify", "train", _model(t), _people(f, t, 1, 4), "--out", t / "c.npz"),
     "DATA holds 1 person (id0): a classifier needs at least two people"),
    (lambda f, t: ("classify", "train", _model(t), _people(f, t, 3, 1), "--out", t / "c.npz"),
     "no person of DATA has two photos"),
    (lambda f, t: ("classify", "predict", _a_file(t), f / "id0" / "0.jpg"),
     "afile: not a facetrain classifier file (not an .npz archive)"),
    (lambda f, t: ("classify", "predict", t / "none.npz", f / "id0" / "0.jpg"),
     "none.npz: no such file (a classifier is made by `facetrain classify train"),
    (lambda f, t: ("classify", "predict", _npz_of(t, "[1]"), f / "id0" / "0.jpg"),
     "c.npz: not a facetrain classifier file"),
    (lambda f, t: ("classify", "predict", _npz_of(t, '{"method": "svm", "threshold": null}'),
                   f / "id0" / "0.jpg"), "c.npz: not a facetrain classifier file"),
    (lambda f, t: ("filter", _model(t), f, "--out", f / "id0" / "list.txt"),
     "it would mix with the data"),
    (lambda f, t: ("stats", f, "--json", f / "id1" / "0.jpg"), "it would mix with the data"),
    (lambda f, t: ("prune", f, f / "kept.txt"), "it would mix with the data"),
    (lambda f, t: ("export", _model(t), "--format", "torchscript", "--out", _model(t)),
     "it would be overwritten"),
    (lambda f, t: ("export", _model(t), "--out", _link_to_null(t)), "m.onnx: not a file"),
    (lambda f, t: ("eval", _model(t), "--pairs", _pairs(t), "--images", f, "--json",
                   f / "m.json"), "it would mix with the data"),
    # 13: an output that cannot be written at all
    (lambda f, t: ("compare", _model(t), f / "id0" / "0.jpg", f / "id1" / "0.jpg", "--json",
                   "/proc/version"), "cannot write"),
    (lambda f, t: ("export", _model(t), "--out", "/proc/x.onnx"), "cannot write"),
    (lambda f, t: ("export", _model(t), "--out", "/sys/x.onnx"), "cannot write"),
    # 43: a negative tolerance
    (lambda f, t: ("export", "pretrained:dlib_resnet", "--out", t / "x.onnx", "--tolerance",
                   "-1"), "--tolerance -1"),
    # numbers a command took in silence (a share of -1, a slice of [:-1]), or refused only
    # after every face was embedded
    (lambda f, t: ("classify", "train", _model(t), f, "--out", t / "c.npz", "--test-fraction",
                   "-1"), "--test-fraction -1.0: a share in (0, 1)"),
    (lambda f, t: ("classify", "train", _model(t), f, "--out", t / "c.npz", "--test-fraction",
                   "nan"), "--test-fraction nan: a share in (0, 1)"),
    (lambda f, t: ("classify", "train", _model(t), f, "--out", t / "c.npz", "--method", "svn"),
     "--method 'svn': choose from svm"),
    (lambda f, t: ("classify", "train", _model(t), _with_unknown(f, t), "--out", t / "c.npz"),
     "a person of DATA is named 'Unknown', as the answer for a face of no known person"),
    (lambda f, t: ("plot-embeddings", _model(t), f, "--out", t / "m.png", "--max-identities",
                   "-1"), "--max-identities -1: at least 1"),
    (lambda f, t: ("filter", _model(t), f, "--out", t / "l.txt", "--min-images", "0"),
     "--min-images 0: at least 1"),
    (lambda f, t: ("split", f, t / "s", "--by", "image", "--min-train", "-1"),
     "--min-train -1, --min-val 0: numbers of images ≥ 0"),
]  # fmt: skip


@pytest.mark.parametrize("case, words", CASES, ids=[str(k) for k in range(len(CASES))])
def test_refused_with_one_clear_line(faces, tmp_path, case, words):
    code, out = run(*case(faces, tmp_path))
    assert code == 2, out
    assert words in out and "Traceback" not in out
    assert len(out.strip().splitlines()) <= 2  # the error (and at most a model line)
    assert not (tmp_path / "r").exists() and not (tmp_path / "same.csv").exists()
    if (tmp_path / "afile").exists():
        assert (tmp_path / "afile").read_text() == "the user's file"
    if (tmp_path / "mine").exists():
        assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in faces.iterdir()) == ["id0", "id1", "id2"]  # data untouched


def test_library_refuses_bad_thresholds_steps_and_margins(tmp_path):
    """18, 36, 38: library cluster/split/identify/undo with values that crashed or lied."""
    from facetrain.library.library import Library
    from facetrain.library.store import LibraryError, check_model

    with Library(tmp_path / "lib.db", create=True) as lib:
        check_model(lib.con, {"distance": "squared_l2", "threshold": 0.5}, "m", "lib.db")
        for bad in (-1.0, float("nan"), float("inf"), 4.01, 100.0):  # past 4: another scale
            with pytest.raises(LibraryError, match="a finite number from 0 to 4, the largest"):
                lib.cluster(bad)
        with pytest.raises(LibraryError, match="undo at least 1"):
            lib.undo(0)
        with pytest.raises(LibraryError, match="--margin -1"):
            lib.identify([], margin=-1.0)
        with pytest.raises(LibraryError, match="--min-score 1.5: a detector score, 0 to 1"):
            lib.gate_of(min_score=1.5)  # no face would ever pass
        assert lib.gate_of(min_score=1.0).min_score == 1.0


def test_outputs_that_are_folders_or_unwritable_are_one_clear_line(faces, tmp_path):
    """12, 13: an output that exists as a folder, or cannot be written, used to print a
    traceback from the atomic write."""
    from facetrain import atomic

    (tmp_path / "adir").mkdir()
    with pytest.raises(atomic.OutputError, match="is a folder"):
        atomic.write_text(tmp_path / "adir", "x")
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(atomic.OutputError, match="cannot write here"):
        atomic.write_text(tmp_path / "afile" / "x.json", "x")
    with pytest.raises(atomic.OutputError, match="cannot write here"):
        atomic.write_text("/proc/facetrain-test.json", "x")
    assert (tmp_path / "afile").read_text() == "mine"
    code, out = run("prune", faces, tmp_path / "adir")
    assert code == 2 and "is a folder" in out and "Traceback" not in out


def test_damaged_model_records_and_specs_are_named(tmp_path):
    """23: bad JSON in a model's metadata, or JSON nested thousands deep (the parser's stack
    ran out: a traceback); a spec that is not an object, not UTF-8, or nested so deep."""
    import torch
    from safetensors.torch import save_file

    for bad, why in (("{bad json", "not JSON"), ("[" * 100_000, "nested too deep")):
        save_file({"model.w": torch.zeros(1)}, str(tmp_path / "m.safetensors"),
                  metadata={"facetrain": bad})  # fmt: skip
        code, out = run("compare", tmp_path / "m.safetensors", "a.jpg", "b.jpg")
        assert code == 2 and "facetrain record cannot be read" in out and why in out, out
    spec, out_file = tmp_path / "spec.json", tmp_path.parent / "e.npz"
    bad = [(b"[1]", "a preprocessing spec is a JSON object"),
           (b'{"model": "\xff"}', "not UTF-8"), (b"[" * 100_000, "nested too deep")]  # fmt: skip
    for text, why in bad:
        spec.write_bytes(text)
        code, out = run("embed", "pretrained:dlib_resnet", tmp_path, "--out", out_file,
                        "--preprocess", spec)  # fmt: skip
        assert code == 2 and why in out and "Traceback" not in out, out


def test_a_damaged_alignment_record_is_named_before_anything_is_made(faces, tmp_path):
    """An aligned-faces folder's align_config.json edited into something no aligner can
    follow stopped `train` with a JSONDecodeError traceback, or was trained on (mode
    'weird', size -5) into a model that found "no face" in every photo; a model file with
    such a record said the same. Each is refused now, naming the file and the field."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    data = tmp_path / "faces"
    shutil.copytree(faces, data)
    bad = [("{bad", "can read (Expecting property name"), ("[3]", "not a JSON object"),
           ('{"mode": "weird", "size": -5}', "mode 'weird': 'similarity' or 'box'"),
           ('{"mode": "similarity", "size": 112.5}', "size 112.5: a whole number"),
           ('{"mode": "box", "margin": -1}', "margin -1: pixels around the box"),
           ('{"thresholds": [0.6, 2]}', "thresholds [0.6, 2]: three numbers")]  # fmt: skip
    record = data / "align_config.json"
    for text, why in bad:
        record.write_text(text)
        train = ("train", "--data", data, "--out", tmp_path / "r", "--epochs", "1")
        for args in (("pack", data, tmp_path / "p"), train):
            code, out = run(*args)
            assert code == 2 and f"{record}: not an alignment record" in out, out
            assert why in out and "Traceback" not in out, out
            assert not (tmp_path / "p").exists() and not (tmp_path / "r").exists()
    pre = {"model": "nn4_small2", "embedding_size": 32, "input_size": 96,
           "alignment": {"mode": "weird", "size": -5}}  # fmt: skip
    save_file({"w": torch.zeros(1)}, str(tmp_path / "m.safetensors"),
              metadata={"facetrain": json.dumps(pre)})  # fmt: skip
    code, out = run("compare", tmp_path / "m.safetensors", "a.jpg", "b.jpg")
    assert code == 2 and "its record's alignment cannot be followed (mode 'weird'" in out, out


def test_an_export_named_for_another_format_is_refused(tmp_path):
    """22: `export --format torchscript --out ts.onnx` left a TorchScript file named .onnx."""
    code, out = run("export", "pretrained:dlib_resnet", "--format", "torchscript",
                    "--out", tmp_path / "ts.onnx")  # fmt: skip
    assert code == 2 and "a torchscript file is named *.pt" in out
    assert not (tmp_path / "ts.onnx").exists()


def test_train_never_writes_into_a_folder_that_is_not_a_run(faces, tmp_path):
    """4, 39, 35: a user's folder, the data folder itself, a batch of one."""
    (tmp_path / "odir").mkdir()
    (tmp_path / "odir" / "config.json").write_text('{"my": "config"}')
    code, out = run("train", "--data", faces, "--out", tmp_path / "odir", "--batch-size", "8")
    assert code == 2 and "not a facetrain run folder (it holds config.json)" in out
    assert (tmp_path / "odir" / "config.json").read_text() == '{"my": "config"}'
    assert sorted(p.name for p in (tmp_path / "odir").iterdir()) == ["config.json"]
    code, out = run("train", "--data", faces, "--out", faces)
    assert code == 2 and "out must not be one of the data folders" in out
    code, out = run("train", "--data", faces, "--out", tmp_path / "r", "--batch-size", "1")
    assert code == 2 and "batch_size must be at least 2" in out


def test_a_garbage_pairs_line_is_named_by_file_and_line(tmp_path):
    """42: `invalid literal for int()` without a file or line."""
    from facetrain.evaluate.verification import read_pairs

    (tmp_path / "pairs.txt").write_text("2 1\nA 1 2\ngarbage line here\nB 1 2\nC 1 D 1\n")
    with pytest.raises(ValueError, match=r"pairs.txt:3: image numbers expected, got 'garbage"):
        read_pairs(tmp_path / "pairs.txt", tmp_path)
    (tmp_path / "pairs.txt").write_text("one 1\n")
    with pytest.raises(ValueError, match=r"pairs.txt:1: expected two numbers"):
        read_pairs(tmp_path / "pairs.txt", tmp_path)


def test_a_damaged_pack_names_the_missing_or_corrupt_file(faces, tmp_path):
    """11, 31: a missing shard failed at the first batch; a garbage index advised
    allow_pickle."""
    import os
    import re

    from facetrain.data.packed import PackedDataset, PackError, pack

    pack(str(faces), tmp_path / "pk", images_per_shard=4, progress=False)
    (tmp_path / "pk" / "shard-00001.bin").unlink()
    with pytest.raises(PackError, match="missing shard-00001.bin"):
        PackedDataset(tmp_path / "pk")
    pack(str(faces), tmp_path / "pk2", progress=False)
    (tmp_path / "pk2" / "index.npy").write_bytes(b"garbage")
    with pytest.raises(PackError, match="corrupt pack") as e:
        PackedDataset(tmp_path / "pk2")
    assert "allow_pickle" not in str(e.value)
    pack(str(faces), tmp_path / "pk3", progress=False)  # cut short: "cannot reshape" mid-run
    shard = tmp_path / "pk3" / "shard-00000.bin"
    whole = shard.stat().st_size
    PackedDataset(tmp_path / "pk3").batch([0, 1])  # whole, it reads
    os.truncate(shard, whole - 1)
    with pytest.raises(PackError, match=rf"shard-00000.bin: cut short \({whole - 1:,} bytes of "
                       rf"the {whole:,} its index names\); pack the data again"):  # fmt: skip
        PackedDataset(tmp_path / "pk3")

    pack(str(faces), tmp_path / "enc", store="encoded", progress=False)  # JPEGs as they are
    ds = PackedDataset(tmp_path / "enc")
    first, second = (int(ds.index[k]["offset"]) for k in (1, 2))
    with open(tmp_path / "enc" / shard.name, "r+b") as f:  # image 1 damaged after packing
        f.seek(first)
        f.write(bytes(second - first))
    said = f"shard-00000.bin: image 1 (packed from {ds.source_paths()[1]}) does not decode;"
    with pytest.raises(PackError, match=re.escape(said + " the pack was damaged after it")):
        PackedDataset(tmp_path / "enc").batch([0, 1, 2])
    assert len(PackedDataset(tmp_path / "enc").batch([0, 2])[0]) == 2  # the others read


def test_library_scan_skips_fifos_and_dangling_links(tmp_path):
    """8: a FIFO named *.jpg blocked the scan forever; 19: a dangling link was a traceback."""
    import os
    import shutil

    from conftest import BBT
    from helpers import make_model

    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    photos = tmp_path / "photos" / "p"
    photos.mkdir(parents=True)
    shutil.copy(sorted((BBT / "reference" / "amy").iterdir())[0], photos / "amy.jpg")
    os.mkfifo(photos / "pipe.jpg")
    (photos / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    model = make_model(tmp_path / "m.safetensors")
    code, out = run("library", "scan", tmp_path / "photos", "--db", tmp_path / "lib.db",
                    "--model", model)  # fmt: skip
    assert code == 0, out
    assert "not a regular file" in out and "dangling link" in out and "1 new" in out


def _bbt_photos(tmp_path, people=("amy", "penny"), k=2):
    import shutil

    from conftest import BBT

    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    photos = tmp_path / "photos"
    for who in people:
        (photos / who).mkdir(parents=True)
        for p in sorted((BBT / "reference" / who).iterdir())[:k]:
            shutil.copy(p, photos / who / p.name)
    return photos


def test_a_name_of_digits_cannot_shadow_a_stack_id(tmp_path):
    """3: a person named "7" took the place of stack 7 (`merge 7 6` merged into another)."""
    import sqlite3

    from helpers import make_model

    photos, db = _bbt_photos(tmp_path), tmp_path / "lib.db"
    model = make_model(tmp_path / "m.safetensors")
    assert run("library", "scan", photos, "--db", db, "--model", model)[0] == 0
    assert run("library", "cluster", "--db", db, "--threshold", "1e-6")[0] == 0
    ids = [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM people ORDER BY id")]
    code, out = run("library", "name", ids[0], str(ids[1]), "--db", db)
    assert code == 2 and "only digits" in out
    # nor the answer for a stranger: identify, imports and personalize's figures would take
    # that person's faces for no one's
    for word in ("unknown", "Unknown", " UNKNOWN "):
        code, out = run("library", "name", ids[0], word, "--db", db)
        assert code == 2 and "'unknown' is the answer for a face of no named person" in out
    assert run("library", "name", ids[0], "Agent 7", "--db", db)[0] == 0
    code, out = run("library", "merge", ids[1], ids[2], "--db", db)
    assert code == 0 and f"stack {ids[2]} merged into {ids[1]}" in out
    code, out = run("library", "faces", "99999999999999999999999", "--db", db)
    assert code == 2 and "no stack" in out


def test_a_model_giving_nan_never_writes_into_a_library(tmp_path):
    """6: `library migrate` to a NaN model exited 0 and made every embedding NaN."""
    import sqlite3

    import numpy as np
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from helpers import make_model

    photos, db = _bbt_photos(tmp_path), tmp_path / "lib.db"
    model = make_model(tmp_path / "m.safetensors")
    nan = make_model(tmp_path / "nan.safetensors", seed=3)
    with safe_open(str(nan), "pt") as f:
        meta = f.metadata()
    weights = load_file(str(nan))
    first = sorted(k for k in weights if k.endswith("weight"))[0]
    weights[first][:] = float("nan")
    save_file(weights, str(nan), metadata=meta)
    assert run("library", "scan", photos, "--db", db, "--model", model)[0] == 0
    before = sqlite3.connect(db).execute("SELECT embedding FROM faces ORDER BY id").fetchall()
    code, out = run("library", "migrate", "--db", db, "--model", nan)
    assert code == 2 and "non-finite embeddings" in out
    after = sqlite3.connect(db).execute("SELECT embedding FROM faces ORDER BY id").fetchall()
    assert after == before and all(np.isfinite(np.frombuffer(b, np.float32)).all()
                                   for (b,) in after)  # fmt: skip
    assert run("library", "people", "--db", db)[0] == 0  # not left half-migrated
    code, out = run("library", "scan", photos, "--db", tmp_path / "new.db", "--model", nan)
    assert code == 2 and "non-finite embeddings" in out and not (tmp_path / "new.db").exists()


def test_identify_a_folder_and_serve_on_a_taken_port(tmp_path):
    """45: `library identify FOLDER` said 'Is a directory'; 47: `serve` on a taken port
    printed its address, then failed."""
    import socket

    from helpers import make_model

    photos, db = _bbt_photos(tmp_path), tmp_path / "lib.db"
    model = make_model(tmp_path / "m.safetensors")
    assert run("library", "scan", photos, "--db", db, "--model", model)[0] == 0
    (photos / "elsewhere").symlink_to(photos / "amy", target_is_directory=True)
    code, out = run("library", "identify", photos, "--db", db, "--threshold", "0.5")
    assert code == 0 and "Is a directory" not in out
    assert sum("amy" in line or "penny" in line for line in out.splitlines()) >= 4
    # a folder passed over below it is said, not left out in silence
    assert f"skipped {photos / 'elsewhere'}: a link to a folder" in " ".join(out.split())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, out = run("library", "serve", "--db", db, "--port", port)
    assert code == 2 and "cannot serve on" in out and "open http" not in out


@pytest.mark.parametrize("command", ["pack", "split"])
def test_a_newline_in_an_identity_name_is_refused_and_nothing_written(tmp_path, command):
    """28: pack wrote identities.txt with 8 lines for 7 identities (every label after it
    shifted); 29: split failed with train.txt written and val.txt missing."""
    import os

    src = make_faces(tmp_path / "src", ids=3, per=3)
    os.rename(src / "id1", src / "new\nline")
    code, out = run(command, src, tmp_path / "out")
    assert code == 2 and "newline in a name" in out and "Traceback" not in out
    assert not (tmp_path / "out").exists()


def test_pack_counts_only_identities_with_images(tmp_path):
    """32: `packed 8 images of 5 identities` when only 2 identities had images."""
    import json

    src = make_faces(tmp_path / "src", ids=3, per=2)
    for f in (src / "id2").iterdir():
        f.write_bytes(b"not an image")
    code, out = run("pack", src, tmp_path / "pack")
    assert code == 0 and "4 images of 2 identities" in out, out
    meta = json.loads((tmp_path / "pack" / "meta.json").read_text())
    assert (meta["identities"], meta["identities_without_images"], meta["skipped"]) == (2, 1, 2)


def test_export_keeps_people_apart_and_clears_its_stale_folders(tmp_path):
    """34: after renaming Alice to Alicia a re-export left Alice/ with its links; people
    named `.` and `..` were both exported to `_`, mixed."""
    import sqlite3

    from helpers import make_model

    photos, db = _bbt_photos(tmp_path, ("amy", "penny", "sheldon"), k=1), tmp_path / "lib.db"
    model = make_model(tmp_path / "m.safetensors")
    assert run("library", "scan", photos, "--db", db, "--model", model)[0] == 0
    assert run("library", "cluster", "--db", db, "--threshold", "1e-6")[0] == 0
    ids = [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM people ORDER BY id")]
    for pid, name in zip(ids, ("Alice", ".", "..")):
        assert run("library", "name", pid, name, "--db", db)[0] == 0
    out = tmp_path / "by-person"
    assert run("library", "export", "--db", db, "--by-person", out)[0] == 0
    folders = sorted(p.name for p in out.iterdir())
    assert folders == sorted(["Alice", "_", f"_ ({ids[2]})"])
    assert all(len([f for f in (out / d).iterdir() if f.is_symlink()]) == 1 for d in folders)
    (out / "mine.txt").write_text("the owner's own file")  # never touched
    assert run("library", "name", ids[0], "Alicia", "--db", db)[0] == 0
    assert run("library", "export", "--db", db, "--by-person", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["Alicia", "_", f"_ ({ids[2]})", "mine.txt"]
    )
    assert all(Path(p).exists() for p in photos.rglob("*.png"))  # originals untouched


def test_stats_counts_every_phone_format_and_not_broken_files(tmp_path):
    """41: GIF, TIFF, AVIF and HEIC were counted `not_image`, and broken files as images."""
    from PIL import Image

    import facetrain.data.images  # noqa: F401 (registers the HEIC opener)

    folder = tmp_path / "data" / "ann"
    folder.mkdir(parents=True)
    for ext in ("gif", "tif", "avif", "heic", "png"):
        Image.new("RGB", (20, 20), (9, 9, 9)).save(folder / f"x.{ext}")
    (folder / "b.jpg").write_bytes(b"junk")
    (folder / "c.cr2").write_bytes(b"II*")
    code, out = run("stats", tmp_path / "data", "--check")
    assert code == 0 and "images: 5" in out and "not_image" not in out
    assert "unreadable: 2" in out and "cannot develop this RAW: Input/output error" in out


def test_one_identity_folder_given_as_a_dataset_says_so(faces, tmp_path):
    """33: `filter MODEL ds/celeba_07201` said 'no usable face images' for a folder of six
    good faces (it must be the root of identity folders). `align` of such a folder said
    'aligned 0 faces' and left its output folder; `train` said '…/pack: no training
    images' and left its run folder; `stats` printed 0 identities. Every command that reads
    a dataset now says what the folder looks like, before it writes anything."""
    from helpers import make_model

    model = make_model(tmp_path / "m.safetensors")
    one, out = faces / "id0", tmp_path / "out"
    for args in (("embed", model, one, "--out", out / "e.npz"), ("align", one, out),
                 ("train", "--data", one, "--out", out), ("stats", one), ("pack", one, out),
                 ("split", one, out), ("prune", one, out / "kept.txt")):  # fmt: skip
        code, said = run(*args)
        assert code == 2 and "looks like one identity's folder; pass its parent" in said, args
        assert str(faces) in said and not out.exists(), args
