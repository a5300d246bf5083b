"""Plots: what a person's name looks like on them."""

from __future__ import annotations

import numpy as np
import pytest


def test_names_in_any_script_are_drawn_as_themselves(tmp_path):
    """Identities named in Hangul, Chinese and Japanese label a t-SNE map with their own
    glyphs (a fallback font the machine has), not as empty boxes."""
    import warnings

    from matplotlib import font_manager

    from facetrain.evaluate.plots import FALLBACK_FONTS, plot_embeddings

    if not {f.name for f in font_manager.fontManager.ttflist} & set(FALLBACK_FONTS):
        pytest.skip("no font here draws CJK (make test installs one where it may)")
    rng = np.random.default_rng(0)
    names = ["김민지"] * 6 + ["王芳"] * 6 + ["山田 太郎"] * 6
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        out = plot_embeddings(rng.normal(size=(18, 8)), names, tmp_path / "map.png")
    assert out.is_file() and out.stat().st_size > 0
    missing = [str(w.message) for w in said if "missing from font" in str(w.message)]
    assert not missing, missing


def test_a_name_sits_on_its_crowd_not_between_its_strays():
    """An identity whose faces t-SNE puts in a crowd plus a few strays far away is named on
    the crowd; the mean of its points would lie in the empty space between."""
    from facetrain.evaluate.plots import label_spot

    rng = np.random.default_rng(1)
    crowd = rng.normal(size=(8, 2)) * 0.5
    strays = np.array([[40.0, 0.0], [0.0, 40.0], [40.0, 40.0]])
    spot = label_spot(np.vstack([crowd, strays]))
    assert np.linalg.norm(spot) < 1.5, spot
    assert np.linalg.norm(np.vstack([crowd, strays]).mean(0)) > 10


def test_verification_panels_name_the_set_they_draw(tmp_path, monkeypatch):
    """A run's first verification set (LFW, or the val split's unseen people) is the one its
    'verification accuracy' panel draws; the panel says which."""
    import json

    from facetrain.evaluate import plots

    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": 1, "loss": 2.0, "lr": 0.1},
             {"eval": "val_split", "step": 1, "accuracy": 0.0, "loss": 3.0},
             {"eval": "val_unseen", "step": 1, "accuracy": 0.7, "val": 0.1},
             {"eval": "agedb", "step": 1, "accuracy": 0.6, "val": 0.05}]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert plots.verify_set(lines) == "val_unseen"
    assert plots.curves(lines)["verification accuracy"][1].tolist() == [0.7]
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out: drawn.setdefault("fig", fig))
    plots.plot_runs([run], tmp_path / "c.png")
    titles = {ax.get_title() for ax in drawn["fig"].axes if ax.get_visible()}
    assert "verification accuracy (val_unseen)" in titles and "training loss" in titles


def test_every_panel_shares_the_runs_step_axis(tmp_path, monkeypatch):
    """A verification logged once, at step 340 of 460, was drawn on an axis of its own
    (steps 325 to 355): beside the loss it said nothing of when in the run it was."""
    import json

    from facetrain.evaluate import plots

    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": s, "loss": 6.0 - s / 100, "lr": 0.1} for s in range(20, 461, 20)]
    lines.append({"eval": "lfw", "step": 340, "accuracy": 0.69, "val": 0.004})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out: drawn.setdefault("fig", fig))
    plots.plot_runs([run], tmp_path / "c.png")
    shown = [ax for ax in drawn["fig"].axes if ax.get_visible()]
    assert len(shown) >= 3 and "verification accuracy (lfw)" in {a.get_title() for a in shown}
    assert {ax.get_xlim() for ax in shown} == {(0.0, 460 * 1.03)}


def test_a_run_keeps_its_colour_in_every_panel(tmp_path, monkeypatch):
    """Runs compared on one figure: a run verified alone (the others have no verification
    set) is drawn in its own colour on the verification panels, the colour its loss has;
    the step axis of a 3-step run is marked at whole steps, not 0.25, 0.5, ..."""
    import json

    from facetrain.evaluate import plots

    for name, verified in (("a", False), ("b", False), ("c", True)):
        (tmp_path / name).mkdir()
        lines = [{"step": s, "loss": 3.0 - s / 10, "lr": 0.1} for s in (1, 2, 3)]
        lines += [{"eval": "lfw", "step": 3, "accuracy": 0.8, "val": 0.2}] if verified else []
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out: drawn.setdefault("fig", fig))
    plots.plot_runs([tmp_path / n for n in "abc"], tmp_path / "c.png")
    colours = {ax.get_title(): [(ln.get_label(), ln.get_color()) for ln in ax.get_lines()]
               for ax in drawn["fig"].axes if ax.get_visible()}  # fmt: skip
    loss = dict(colours["training loss"])
    assert len(set(loss.values())) == 3  # three runs, three colours
    assert colours["verification accuracy (lfw)"] == [("c", loss["c"])]
    assert colours["VAL @ FAR=1e-3 (lfw)"] == [("c", loss["c"])]
    steps = [t for ax in drawn["fig"].axes if ax.get_visible() for t in ax.get_xticks()]
    assert steps and all(float(t).is_integer() for t in steps)  # a 3-step run: whole steps


def test_a_metrics_log_with_lines_of_another_writer_still_plots(tmp_path):
    """Lines of metrics.jsonl with no step or a value that is not a number (another
    program's, a hand edit) are no points; a log of nothing else names the run."""
    from facetrain.evaluate.plots import curves
    from facetrain.run_folder import read_metrics
    from helpers import cli, cli_fails

    run = tmp_path / "r"
    run.mkdir()
    lines = ['[1, 2]', '{"step": "a", "loss": "b"}', '{"loss": 3}', '{"step": 4, "loss": 2.5}',
             '{"step": 5, "loss": 2.0, "lr": true}', '{"step": 6, "loss": "NaN?"}']  # fmt: skip
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    got = curves(read_metrics(run))
    assert list(got) == ["training loss"]
    assert got["training loss"][0].tolist() == [4, 5]
    assert got["training loss"][1].tolist() == [2.5, 2.0]
    cli("plot", run, "--out", tmp_path / "c.png")
    (run / "metrics.jsonl").write_text(lines[1] + "\n")
    assert f"{run}: no metrics logged yet" in cli_fails("report", run).replace("\n", "")


def test_a_report_says_which_run_file_it_cannot_read_and_shows_the_rest(tmp_path):
    """A run whose eval/metrics.json, config.json or eval/roc.csv was damaged (a hand
    edit, a copy cut short) still gets its page: the curves, the metrics logged during
    training, and a line naming each file it could not read."""
    from helpers import cli

    run = tmp_path / "r"
    (run / "eval").mkdir(parents=True)
    logged = ['{"step": 1, "loss": 2.0}', '{"step": 1, "eval": "lfw", "accuracy": 0.75}']
    (run / "metrics.jsonl").write_text("\n".join(logged) + "\n")
    (run / "config.json").write_text('{"model": "nn4_small2"')
    (run / "eval" / "roc.csv").write_text("set,fpr\nlfw,x\n")
    for damaged in ("{bad", '{"x": 1}', '{"sets": {"lfw": 5}}'):
        (run / "eval" / "metrics.json").write_text(damaged)
        cli("report", run)
        page = (run / "report.html").read_text()
        assert "the last verification logged during training" in page
        assert f"{run / 'eval' / 'metrics.json'}" in page and "0.7500" in page
        assert f"Settings unknown: {run / 'config.json'} cannot be read" in page
        assert f"No ROC: {run / 'eval' / 'roc.csv'} cannot be read" in page
        assert page.count("data:image/png;base64,") == 1  # the curves


def test_a_report_says_when_its_figures_are_not_the_final_model_s(tmp_path):
    """`facetrain report` while a run trains headed its figures "Final metrics"; after a
    resume trained on, it showed the evaluation of the model the run had before as final."""
    import os

    from helpers import cli

    run = tmp_path / "r"
    (run / "eval").mkdir(parents=True)
    logged = ['{"step": 1, "loss": 2.0}', '{"step": 1, "eval": "lfw", "accuracy": 0.75}']
    (run / "metrics.jsonl").write_text("\n".join(logged) + "\n")
    cli("report", run)
    page = (run / "report.html").read_text()
    assert "<h2>Metrics so far</h2>" in page and "Final metrics" not in page
    assert "This run has not finished: no model.safetensors yet" in page and "0.7500" in page
    (run / "eval" / "metrics.json").write_text('{"sets": {"lfw": {"accuracy": 0.875}}}')
    (run / "model.safetensors").write_bytes(b"weights")  # trained on after that eval
    os.utime(run / "eval" / "metrics.json", (1e9, 1e9))
    cli("report", run)
    page = (run / "report.html").read_text()
    assert "<h2>Final metrics</h2>" in page and "0.8750" in page
    assert f"{run / 'eval' / 'metrics.json'} is older than {run / 'model.safetensors'}" in page
    os.utime(run / "eval" / "metrics.json")  # evaluated again: now
    cli("report", run)
    page = (run / "report.html").read_text()
    assert "<h2>Final metrics</h2>" in page and "is older than" not in page
    assert "has not finished" not in page
