"""The recipes under recipes/ load as training configurations, the loss comparison is fair
(the same backbone, data, augmentation and budget for every loss), and `--table` reports a
finished run from its own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facetrain.experiment import REWARPED, SUBSETS
from facetrain.train.config import TrainConfig, load_config_file
from facetrain.train.settings import idle_settings

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = sorted(RECIPES.glob("*.toml"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_recipe_is_a_valid_training_config(path):
    cfg = TrainConfig.of(**load_config_file(path))  # unknown keys raise here
    cfg.validate()
    assert idle_settings(cfg) == []  # every setting it gives is one its run reads
    # the protocol: mini-train (and more-train) only — packed, halved or re-warped by
    # experiment.py, or the shared folders themselves; never an LFW image
    shared = {"../shared/datasets/mini-train", "../shared/datasets/more-train"}
    made = {"runs/packs/mini-train", *SUBSETS, *REWARPED}
    assert all(d in shared | made for d in cfg.data.paths), cfg.data.paths
    assert cfg.eval.pairs.endswith("lfw/pairs.txt")


def test_recipes_write_to_their_own_run_folders():
    outs = [load_config_file(p)["out"] for p in ALL]
    assert len(set(outs)) == len(outs) == len(ALL)
    assert all(out == f"runs/{p.stem}" for out, p in zip(outs, ALL))


def test_the_loss_comparison_shares_backbone_data_and_budget():
    compare = {p.stem: TrainConfig.of(**load_config_file(p)) for p in ALL if "compare-" in p.stem}
    losses = {c.objective.loss for c in compare.values()}
    assert {"softmax", "arcface", "cosface", "triplet", "contrastive"} <= losses
    assert any(c.objective.center_loss_factor > 0 for c in compare.values())
    shared = ("model", "input_size", "embedding_size", "epochs", "batch_size", "lr", "crop")
    shared += ("flip", "weight_decay", "warmup_epochs", "epoch_size", "optimizer", "schedule")
    for key in shared:
        assert len({c.get(key) for c in compare.values()}) == 1, key


def test_table_row_reports_a_finished_run(tmp_path):
    from facetrain.experiment import table_row

    run = tmp_path / "compare-x"
    (run / "eval").mkdir(parents=True)
    cfg = TrainConfig.of(data=["p"], loss="arcface", margin_s=32.0, margin_m=-1.0, threads=1)
    (run / "config.json").write_text(json.dumps(cfg.flat()))
    lines = [{"epoch": e, "epoch_end": True, "seconds": 90.0} for e in range(4)]
    lines.insert(1, {"epoch": 0, "step": 5, "loss": 3.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    metrics = dict(accuracy=0.81234, accuracy_std=0.0151, val=0.05, val_std=0.01, far=0.0012)
    (run / "eval/metrics.json").write_text(json.dumps(metrics | {"auc": 0.9}))
    row = table_row(run, "2-core CPU")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "compare-x"
    assert cells[1] == "arcface (s 32, m 0.5)"  # a negative margin means the loss's default
    assert cells[4] == "6 min, 2-core CPU, 1 thread"  # 4 epochs of 90 s
    assert cells[5] == "81.23 ± 1.51 %"
    assert cells[6] == "0.0500 ± 0.0100 (FAR 0.0012)"
    cfg.model.init_from = "runs/best"  # a fine-tune names the run it started from
    (run / "config.json").write_text(json.dumps(cfg.flat()))
    assert table_row(run, "x").split("|")[2].strip() == "arcface (s 32, m 0.5), from best"


def test_the_table_leaves_out_a_run_whose_files_it_cannot_read(tmp_path, capsys):
    """A run with a damaged eval or a config of another version stopped the whole table
    with a traceback; it is named and left out, the other rows printed."""
    from facetrain.experiment import table

    runs = []
    for name, config, metrics in [("ok", {}, {}), ("cut", {}, None), ("old", None, {})]:
        run = tmp_path / name
        (run / "eval").mkdir(parents=True)
        cfg = TrainConfig.of(data=["p"]).flat() if config is not None else {"loss": "softmax"}
        (run / "config.json").write_text(json.dumps(cfg))
        (run / "metrics.jsonl").write_text('{"epoch": 0, "epoch_end": true, "seconds": 60}\n')
        m = dict(accuracy=0.9, accuracy_std=0.01, val=0.5, val_std=0.1, far=0.001, auc=0.95)
        (run / "eval/metrics.json").write_text(json.dumps(m) if metrics is not None else '{"acc')
        runs.append(str(run))
    table(runs)
    out, err = capsys.readouterr()
    assert out.count("| ok |") == 1 and "| cut |" not in out and "| old |" not in out
    said = " ".join(err.split())
    cut = tmp_path / "cut"
    assert f"{cut}: left out: {cut / 'eval' / 'metrics.json'} cannot be read: not JSON" in said
    assert f"{tmp_path / 'old'}: left out: no 'center_loss_factor' in its files" in said


@pytest.mark.parametrize("data", sorted(SUBSETS), ids=lambda d: Path(d).parent.name)
def test_the_data_subsets_are_the_share_of_identities_or_faces_they_say(
    data, tmp_path, monkeypatch
):
    from facetrain import experiment
    from facetrain.data.listing import iter_samples

    for name in ("mini-train", "more-train"):
        for i in range(12):
            (tmp_path / name / f"{name}{i}").mkdir(parents=True)
            for j in range(6):
                (tmp_path / name / f"{name}{i}" / f"{j}.jpg").write_bytes(b"")  # names only
    monkeypatch.setattr(experiment, "shared_dataset", lambda name: tmp_path / name)
    monkeypatch.chdir(tmp_path)
    experiment.subset(data)
    train = list(iter_samples(str(tmp_path / data)))
    ids = {s.identity for s in train}
    names, by, fraction = SUBSETS[data]
    people = 12 * len(names)
    if by == "identity":  # a share of the people, all their faces
        assert len(ids) == round(people * (1 - fraction)) and len(train) == 6 * len(ids)
    else:  # every person, a share of their faces (rounded per person)
        assert len(ids) == people and len(train) == people * (6 - round(6 * fraction))


@pytest.mark.parametrize("path", [p for p in ALL if p.stem != "best"], ids=lambda p: p.stem)
def test_a_recipe_states_only_what_it_changes_from_its_base(path):
    import tomllib

    own = tomllib.loads(path.read_text())
    base = load_config_file(path.parent / own.pop("base"))
    same = [k for k, v in own.items() if base.get(k, TrainConfig().get(k)) == v]
    assert not same, f"{path.name} repeats its base: {same}"


def test_a_cycle_of_bases_is_one_clear_error(tmp_path):
    from facetrain.train.config import ConfigError

    (tmp_path / "a.toml").write_text('base = "b.toml"\nepochs = 2\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\nepochs = 3\n')
    with pytest.raises(ConfigError, match="form a cycle"):
        load_config_file(tmp_path / "a.toml")


@pytest.mark.parametrize(
    "name, text, why",
    [
        ("absent.toml", None, "config file not found"),
        ("list.json", "[1, 2]", "expected a table of settings"),
        ("num.toml", "base = 3\nepochs = 2\n", r"base = 3: expected the path of another recipe"),
        ("bad.toml", "epochs = \n", "not a readable TOML/JSON settings file"),
        ("type.toml", 'epochs = "many"\n', "epochs"),
    ],
)
def test_a_settings_file_that_cannot_be_used_is_named_with_the_reason(tmp_path, name, text, why):
    from facetrain.train.config import ConfigError

    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=f"{name}: .*{why}"):
        load_config_file(tmp_path / name)


def test_a_base_recipe_is_read_beside_the_file_and_the_file_wins(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.toml").write_text('model = "mobilefacenet"\nepochs = 3\n')
    (tmp_path / "run.toml").write_text('base = "sub/base.toml"\nepochs = 7\n')
    assert load_config_file(tmp_path / "run.toml") == {"model": "mobilefacenet", "epochs": 7}


def test_every_recipe_of_an_experiment_is_checked_before_the_first_runs(tmp_path, capsys):
    """`python -m facetrain.experiment a.toml b.toml`: a mistake in b was found after a
    trained (hours), and as a traceback; now every recipe's, one line each, exit 2."""
    from facetrain import experiment

    bad = tmp_path / "b.toml"
    bad.write_text(f'base = "{RECIPES / "demo.toml"}"\nepochs = "two"\n')
    with pytest.raises(SystemExit) as e:
        experiment.main([str(RECIPES / "demo.toml"), str(bad), str(tmp_path / "c")])
    said = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and "Traceback" not in said
    assert f"error: {bad}: epochs = 'two': expected int" in said
    assert f"error: {tmp_path / 'c'}: config file not found" in said
    assert said.count("error:") == 2  # the good recipe is not named
