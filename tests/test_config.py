"""Settings are resolved and checked in the package, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrain.cli import app
from facetrain.train.config import ConfigError, Platform, TrainConfig, resolve, settings
from facetrain.train.loop import TrainingError, train
from helpers import make_faces, small_cfg

runner = CliRunner()


@pytest.mark.parametrize(
    "item, words",
    [
        ("eval_distance=cosin", "choose from squared_l2, cosine"),
        ("miner=semi-hard", "choose from all, semihard"),
        ("model=resnet50", "choose from dlib_resnet"),
        ("device=gpu", "choose cpu, cuda"),
        ("optimizer=lamb", "choose from sgd"),
        ("schedule=linear", "choose from constant"),
        ("normalize=imagenet", "choose from fixed"),
        ("eval_flip=both", "choose from sum"),
        ("amp=fp8", "choose from none, bf16, fp16"),
        ("log_every=0", "log_every = 0: must be at least 1"),
        ("eval_every=0", "eval_every = 0"),
        ("threads=-1", "threads = -1"),
        ("input_size=5", "input_size = 5"),
        # a 240 GB probe that failed, said as "input_size 100000 is too small for mobilefacenet"
        ("input_size=100000", "input_size = 100000: 0 (the model's own) or from 16 to 1024"),
        ("embedding_size=100000000", "embedding_size = 100000000: from 2 to 8192"),  # (200 GB)
        ("embedding_size=1", "embedding_size = 1: from 2 to 8192"),
        ("lr=nan", "lr = nan"),
        # in range, or the run failed deep in torch (label_smoothing 1.5: a RuntimeError) or
        # trained on without saying (a margin of NaN, an EMA that never moves)
        ("label_smoothing=1.5", "label_smoothing = 1.5: must be in [0, 1)"),
        ("margin_m=nan", "margin_m = nan: must be a finite number"),
        ("margin_s=0", "margin_s = 0.0: must be a finite number > 0"),
        ("ema_decay=1", "ema_decay = 1.0: must be in [0, 1)"),
        ("triplet_margin=-0.2", "triplet_margin = -0.2: must be a finite number ≥ 0"),
        ("extra_identities=-1", "extra_identities = -1: must be ≥ 0"),
        ("epochs=three", "--set epochs=three: expected int"),
        ("flip=maybe", "expected bool"),
        ("learning_rate=0.1", "unknown setting 'learning_rate'; did you mean 'lr'?"),
        ("epoch=3", "unknown setting 'epoch'; did you mean 'epochs'?"),
        ("wd=0.1", "unknown setting 'wd' ("),  # no setting near it: none is guessed
    ],
)
def test_every_bad_setting_is_refused_before_anything_is_written(tmp_path, item, words):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(out), "--set", item])
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_every_number_setting_has_a_range_that_refuses_nan_and_its_edges():
    """Each float setting states the interval it must lie in; NaN, infinity and a value
    just past an edge are each refused naming the setting; the default lies inside."""
    from facetrain.train.settings import KEYS

    floats = [k for k, (_, _, f) in KEYS.items() if f.type in ("float", float)]
    assert len(floats) >= 20
    TrainConfig.of(data=["x"]).validate()  # the defaults lie inside
    for key in floats:
        within = KEYS[key][2].metadata.get("within")
        assert within, f"{key} has no range"
        lo, hi = (float(x) for x in within[1:-1].split(","))
        past = [v for v, open_ in ((lo, within[0] == "("), (hi, within[-1] == ")")) if open_]
        past += [lo - 1, hi + 1, float("nan"), float("inf")]
        for bad in past:
            with pytest.raises(ConfigError) as e:
                TrainConfig.of(data=["x"], **{key: bad}).validate()
            assert any(p.startswith(f"{key} = {bad}: must be ") for p in e.value.problems)


@pytest.mark.parametrize("loss", ["triplet", "contrastive"])
def test_a_metric_loss_with_one_face_a_person_is_refused(loss):
    """Batches of one face a person hold no same-person pair: the run trained on a loss of
    0.0000 and learnt nothing, in silence."""
    with pytest.raises(ConfigError) as e:
        TrainConfig.of(data=["x"], loss=loss, images_per_identity=1).validate()
    assert e.value.problems == [f"images_per_identity = 1: {loss} needs at least 2 "
                                "(same-person pairs in every batch)"]  # fmt: skip
    TrainConfig.of(data=["x"], loss=loss, images_per_identity=2).validate()
    TrainConfig.of(data=["x"], loss="softmax", images_per_identity=1).validate()  # (unread)


def test_a_backbone_frozen_for_the_whole_run_is_refused():
    """The saved model is the network, not the head: frozen every epoch, it saved the
    network it started from."""
    with pytest.raises(ConfigError) as e:
        TrainConfig.of(data=["x"], epochs=2, freeze_backbone_epochs=2).validate()
    assert e.value.problems == ["freeze_backbone_epochs = 2: fewer than epochs (2), or the "
                                "network, the model a run saves, never trains (only its head "
                                "would)"]  # fmt: skip
    TrainConfig.of(data=["x"], epochs=2, freeze_backbone_epochs=1).validate()


def test_every_wrong_setting_is_named_in_one_refusal():
    """A config with several mistakes was refused one mistake a run: the first setting
    checked, then, once fixed, the next. Every wrong setting of every group is named at
    once, each on its own line; wrong types are named before the rules that read them."""
    with pytest.raises(ConfigError) as e:
        TrainConfig.of(data=["x"], epochs=0, lr=-1.0, margin_m=float("nan"), amp="fp16",
                       normalize="unit", eval_every=0).validate()  # fmt: skip
    assert e.value.problems == [
        "normalize = 'unit': choose from fixed, arcface, per_image, none",
        "margin_m = nan: must be a finite number",
        "lr = -1.0: must be a finite number ≥ 0",
        "epochs = 0: must be at least 1",  # (the setting that is wrong, not its neighbour)
        "eval_every = 0: must be at least 1",
        "amp fp16 needs a GPU; use bf16 on a CPU",
    ]
    assert str(e.value).startswith("6 settings need changing:\n  normalize = 'unit'")
    with pytest.raises(ConfigError) as e:  # a wrong type: its rules are not read
        TrainConfig.of(data=["x"], epochs="3", lr="fast").validate()
    assert e.value.problems == ["setting: epochs = '3': expected int",
                                "setting: lr = 'fast': expected float"]  # fmt: skip


def test_the_mistakes_of_a_recipe_flags_and_sets_are_named_in_one_refusal(tmp_path):
    """A recipe with a value of the wrong type, a model that is none, a --set of a name
    that is none and a flag out of range were refused a kind at a time: the type, then
    (mended) the name, then the model and the flag together."""
    f = tmp_path / "r.toml"
    f.write_text('epochs = "two"\nmodel = "iresnet5"\ndata = ["faces"]\n')
    with pytest.raises(ConfigError) as e:
        resolve(f, {"lr": -1.0, "out": str(tmp_path / "r")}, None, ["epoch=3", "flip=maybe"])
    said = e.value.problems
    assert len(said) == 5 and said[:3] == [
        f"{f}: epochs = 'two': expected int",
        "--set 'epoch=3': unknown setting 'epoch'; did you mean 'epochs'? "
        "(`facetrain train --list-settings`)",
        "--set flip=maybe: expected bool",
    ]
    assert sorted(p.split(":")[0] for p in said[3:]) == ["lr = -1.0", "model = 'iresnet5'"]
    from facetrain.train.config import load_config_file

    g = tmp_path / "g.toml"  # a recipe read alone: its base's mistake still refused
    g.write_text(f'base = "{f.name}"\nlr = 0.1\n')
    with pytest.raises(ConfigError, match="epochs = 'two': expected int"):
        load_config_file(g)


def test_a_recipe_in_another_tool_s_words_is_refused_with_every_name_facetrain_uses(
    tmp_path,
):
    """A FaceNet or arcface_torch user's recipe names settings their way: each unknown
    name is said at once, with facetrain's name for it, and every such name is a setting."""
    from facetrain.train.config import load_config_file
    from facetrain.train.settings import KEYS, OTHER_TOOLS

    assert set(OTHER_TOOLS.values()) <= set(KEYS) and not set(OTHER_TOOLS) & set(KEYS)
    recipe = tmp_path / "facenet.toml"
    recipe.write_text('max_nrof_epochs = 90\nlearning_rate = 0.05\nbatchsize = 90\nlr = "x"\n')
    with pytest.raises(ConfigError) as e:
        load_config_file(recipe)
    assert [p.split(": ", 1)[1].split(" (")[0] for p in e.value.problems] == [
        "unknown setting 'max_nrof_epochs'; did you mean 'epochs'?",
        "unknown setting 'learning_rate'; did you mean 'lr'?",
        "unknown setting 'batchsize'; did you mean 'batch_size'?",
        "lr = 'x': expected float",
    ]
    recipe.write_text("ema = 0.999\nwarmup = 2\n")  # a word of a setting's name
    with pytest.raises(ConfigError) as e:
        load_config_file(recipe)
    assert [p.split(": ", 1)[1].split(" (")[0] for p in e.value.problems] == [
        "unknown setting 'ema'; did you mean 'ema_decay'?",
        "unknown setting 'warmup'; did you mean 'margin_warmup_epochs' or 'warmup_epochs'?",
    ]


def test_every_whole_number_setting_refuses_minus_one():
    """-1 is no count of anything: eval_max_pairs = -1 cut the last pair off every fold of
    the pairs checked during training (a slice [:-1]), in silence."""
    from facetrain.train.settings import KEYS

    ints = [k for k, (_, _, f) in KEYS.items() if f.type in ("int", int)]
    assert len(ints) >= 15
    for key in ints:
        with pytest.raises(ConfigError, match=key):  # named in the refusal
            TrainConfig.of(data=["x"], **{key: -1}).validate()


def test_accumulate_leaves_each_micro_batch_two_faces(tmp_path):
    """accumulate splits each batch; a micro-batch of one face failed in batch norm (a
    ValueError from torch) after the run folder was made."""
    faces = make_faces(tmp_path / "faces", ids=4, per=4)
    with pytest.raises(TrainingError, match="accumulate = 9 cuts a batch of 16 into "
                                            "micro-batches of 1"):  # fmt: skip
        train(small_cfg(faces, tmp_path / "run", accumulate=9), log=lambda *_: None)
    train(small_cfg(faces, tmp_path / "run", accumulate=8, epochs=1), log=lambda *_: None)
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_a_config_file_value_of_the_wrong_type_names_file_and_setting(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('data = ["x"]\nepochs = "three"\n')
    with pytest.raises(ConfigError, match=r"r.toml: epochs = 'three': expected int"):
        resolve(f)
    f.write_text('data = ["x"]\nflip = "no"\n')  # a string is not a bool: refused, not truthy
    with pytest.raises(ConfigError, match="flip = 'no': expected bool"):
        resolve(f)


def test_a_config_file_that_cannot_be_read_says_why(tmp_path):
    """Broken, not UTF-8, or arrays nested thousands deep (the parser's stack ran out: a
    traceback) — in TOML and in JSON."""
    for name, text, why in (("r.toml", b"epochs = [", "not a readable"),
                            ("r.json", b'{"lr": "\xff"}', "can't decode"),
                            ("r.toml", b"x = " + b"[" * 100_000, "nested too deep"),
                            ("r.json", b"[" * 100_000, "nested too deep")):  # fmt: skip
        (tmp_path / name).write_bytes(text)
        with pytest.raises(ConfigError, match=why):
            resolve(tmp_path / name)


def test_precedence_file_then_flags_then_platform_then_set(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('data = ["pack"]\nepochs = 3\nlr = 0.5\nout = "run"\n')
    cfg = resolve(f, {"lr": 0.2, "epochs": None}, Platform(data_dir="/d", output_dir="/o"),
                  ["epochs=7", "lr_steps=2,4", "flip=off"])  # fmt: skip
    o = cfg.optim
    assert (o.epochs, o.lr, o.lr_steps, cfg.data.flip) == (7, 0.2, [2, 4], False)
    assert cfg.data.paths == ["/d/pack"] and cfg.platform.out == "/o/run"


def test_a_fine_tune_takes_the_network_and_input_its_model_was_trained_with(tmp_path):
    """`--set init_from=pretrained:facetrain_scratch` alone was refused three times in turn
    (model and input size, then the embedding size after packing the data); the record of
    the model it starts from now gives what the run does not say, and what it says stays."""
    from facetrain.inference.record import Preprocess, save_model
    from facetrain.models import create_model

    pre = Preprocess(model="nn4_small2_bn", embedding_size=32, input_size=80, normalize="arcface")
    base = save_model(tmp_path / "base.safetensors", create_model("nn4_small2_bn", 32), pre)
    where = {"data": ["faces"], "out": str(tmp_path / "ft")}
    cfg = resolve(None, where, None, [f"init_from={base}"])
    m = cfg.model
    assert (m.arch, m.embedding_size, m.input_size, cfg.data.normalize) == (
        "nn4_small2_bn", 32, 80, "arcface")  # fmt: skip
    mine = resolve(None, where | {"model": "mobilefacenet"}, None,
                   [f"init_from={base}", "input_size=112"])  # fmt: skip
    assert (mine.model.arch, mine.model.input_size, mine.model.embedding_size) == (
        "mobilefacenet", 112, 32)  # fmt: skip
    plain = resolve(None, where, None, [f"init_from={tmp_path / 'no-record'}"])
    assert plain.model.arch == TrainConfig().model.arch  # nothing to read: the defaults


BEFORE_GROUPS = Path(__file__).parent / "fixtures" / "config-before-groups.json"


def test_list_settings_shows_every_setting_with_type_default_and_meaning():
    rows = settings()
    # the flat names a config.json held before the settings were grouped, each once
    assert sorted(r[0] for r in rows) == sorted(json.loads(BEFORE_GROUPS.read_text()))
    assert all(json.loads(r[2]) == TrainConfig().get(r[0]) for r in rows)
    assert all(r[3] for r in rows), [r[0] for r in rows if not r[3]]
    r = runner.invoke(app, ["train", "--list-settings"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "eval_distance" in r.output and "list[str]" in r.output and "semihard" in r.output
    meaning = {row[0]: row[3] for row in rows}  # what reads a setting that not every run does
    assert meaning["lr_steps"].endswith("; read with schedule step")
    assert meaning["margin_m"].endswith("; read with loss arcface, cosface")
    assert "; in [0, 1); read with" in meaning["label_smoothing"]  # its range, said
    assert meaning["lr"].endswith("; a finite number ≥ 0")


def test_a_given_library_threshold_is_measured_in_the_models_distance(tmp_path):
    """`library cluster --threshold T` on a cosine model used to apply T as euclidean."""
    from facetrain.library.library import Library
    from facetrain.library.store import check_model

    with Library(tmp_path / "lib.db", create=True) as lib:
        check_model(lib.con, {"distance": "cosine", "threshold": 0.3}, "m", "lib.db")
        assert lib.threshold(0.25) == (0.25, "cosine")
        assert lib.threshold(None) == (0.3, "cosine")


def test_a_config_json_from_before_the_groups_resumes_unchanged(tmp_path):
    """A run's config.json written by the flat TrainConfig loads into the groups and is
    written back with the same keys and values; the groups get each setting."""
    old = json.loads(BEFORE_GROUPS.read_text())
    cfg = resolve(BEFORE_GROUPS)
    assert cfg.flat() == old
    assert cfg.objective.partial_fc and cfg.objective.loss == "arcface"
    assert cfg.data.paths == ["faces"] and cfg.eval.bins == ["a.bin"]
    assert cfg.platform.out == "runs/old" and cfg.model.arch == old["model"]
    assert resolve(BEFORE_GROUPS, sets=["eval_every=3"]).eval.every == 3


def test_each_group_checks_its_own_settings():
    """A group validates itself, so a function given one group can trust it."""
    from facetrain.train.settings import DataSettings, ObjectiveSettings, OptimSettings

    with pytest.raises(ConfigError, match="batch_size must be at least 2"):
        DataSettings(paths=["x"], batch_size=1).validate()
    with pytest.raises(ConfigError, match="partial_fc works with loss arcface or cosface"):
        ObjectiveSettings(partial_fc=True).validate()
    with pytest.raises(ConfigError, match="schedule = 'cos': choose from"):
        OptimSettings(schedule="cos").validate()
    with pytest.raises(ConfigError, match="unknown setting 'epoch'"):
        TrainConfig.of(epoch=3)
