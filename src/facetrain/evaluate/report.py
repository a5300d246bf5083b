"""`facetrain report RUN`: one self-contained HTML page about a run.

Learning curves (from metrics.jsonl), the final metrics table (from `facetrain eval`'s
RUN/eval/metrics.json, else the run's last logged verification) and the ROC
(RUN/eval/roc.csv). Images are embedded as data URIs so the page can be mailed or
attached to an issue as one file.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from pathlib import Path

from facetrain import foreign
from facetrain.evaluate.plots import plot_roc, plot_runs
from facetrain.run_folder import (
    CONFIG,
    MACHINE,
    REVISION,
    UNFINISHED,
    WEIGHTS,
    read_metrics,
    read_rates,
)

ROWS = (
    ("accuracy", "accuracy (10-fold)"),
    ("accuracy_std", "± std"),
    ("val", "VAL @ FAR"),
    ("val_std", "VAL ± std"),
    ("far", "FAR reached"),
    ("auc", "AUC"),
    ("eer", "EER"),
    ("threshold", "threshold"),
    ("pairs_used", "pairs used"),
    ("pairs_missing", "pairs missing"),
)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" style="max-width:100%">'
    )


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def final_metrics(run: Path) -> tuple[dict[str, dict], str]:
    """Per-set metrics and where they came from."""
    ev = run / "eval" / "metrics.json"
    if ev.exists():
        got, why = foreign.read_json(ev)
        sets = got.get("sets") if isinstance(got, dict) else None
        if isinstance(sets, dict) and all(isinstance(m, dict) for m in sets.values()):
            return sets, f"facetrain eval ({ev})"
        why = why or f"{ev} holds no table of sets"
    last: dict[str, dict] = {}
    for line in read_metrics(run):
        if "eval" in line and line["eval"] != "val_split":
            last[str(line["eval"])] = line
    return last, "the last verification logged during training (metrics.jsonl" + (
        f"; {why})" if ev.exists() else ")"
    )


def write_report(run: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """The run's page (RUN/report.html unless `out`), written atomically."""
    from facetrain import atomic

    run = Path(run)
    out = Path(out) if out else run / "report.html"
    parts = [
        "<!doctype html><html lang='en'><meta charset='utf-8'>",
        f"<title>facetrain report: {html.escape(run.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;"
        "text-align:right}th:first-child,td:first-child{text-align:left}</style>",
        f"<main><h1>facetrain run <code>{html.escape(str(run))}</code></h1>",
        *_settings(run),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        parts.append("<h2>Learning curves</h2>")
        curves = plot_runs([run], Path(tmp) / "curves.png")
        parts.append(_img(curves, "the run's loss, learning rate and verification by step"))
        parts += _metrics_table(*final_metrics(run), _not_final(run))
        parts += _roc(run, Path(tmp))
    atomic.write_text(out, "\n".join(parts) + "\n</main>\n")
    return out


def _settings(run: Path) -> list[str]:
    """The run's main settings, the code revision it started from and each resume's."""
    parts = []
    if (run / CONFIG).exists():
        c, why = foreign.read_table(run / CONFIG, "table of settings")
        if c is None:
            parts.append(f"<p>Settings unknown: {html.escape(why)}.</p>")
        else:
            keys = ("model", "loss", "embedding_size", "input_size", "epochs", "batch_size", "lr",
                    "schedule")  # fmt: skip
            said = c | ({"input_size": "the model's own"} if c.get("input_size") == 0 else {})
            if c.get("schedule") == "file":  # its rates, not the `lr` it does not read
                said |= {"lr": None, "schedule": _rates(run)}
            shown = ", ".join(f"{k} <b>{html.escape(str(said[k]))}</b>" for k in keys
                              if said.get(k) is not None)  # fmt: skip
            parts.append(f"<p>{shown}</p>")
    if (run / REVISION).exists():
        first, *later = (run / REVISION).read_text(errors="replace").splitlines() or [""]
        parts.append(f"<p>code revision <code>{html.escape(first)}</code>{_machine(run)}</p>")
        if later:
            parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in later) + "</ul>")
    return parts


def _rates(run: Path) -> str:
    """A schedule file's rates as the run trains by them (its schedule.json), or 'file'."""
    rates = read_rates(run)  # none (an older run), or damaged: unsaid
    return "file: " + ", ".join(f"{e}: {v:g}" for e, v in rates) if rates else "file"


def _machine(run: Path) -> str:
    """', trained on' the machine the run started on (its machine.json), or nothing."""
    m, _ = foreign.read_table(run / MACHINE)  # none (an older run), or damaged: unsaid
    if m is None:
        return ""
    on = [
        m.get("gpu"),
        m.get("cpu") and f"{m['cpu']}, {m.get('cpu_kernels')} kernels",
        m.get("torch") and f"torch {m['torch']}",
        m.get("python") and f"Python {m['python']}",
    ]
    return ", trained on " + html.escape(", ".join(str(x) for x in on if x))


def _not_final(run: Path) -> tuple[str, str]:
    """The metrics' heading, and why they may not be the final model's: a run still
    training (or stopped before its end), or an evaluation of the model it had before it
    trained on."""
    weights, ev = run / WEIGHTS, run / "eval" / "metrics.json"
    if not weights.exists():
        return "Metrics so far", f"{UNFINISHED[0].upper()}{UNFINISHED[1:]}."
    if ev.exists() and ev.stat().st_mtime < weights.stat().st_mtime:
        return "Final metrics", (f"{ev} is older than {weights}: it measured the model "
                                 "before the run trained on; `facetrain eval RUN` measures "
                                 "this one.")  # fmt: skip
    return "Final metrics", ""


def _metrics_table(sets: dict[str, dict], source: str, status: tuple[str, str]) -> list[str]:
    """A column of metrics per verification set, each set's note, under the heading
    `status` gives with its warning."""
    title, warning = status
    parts = [f"<h2>{title}</h2><p>from {html.escape(source)}</p>"]
    if warning:
        parts.append(f"<p><b>{html.escape(warning)}</b></p>")
    if not sets:
        return parts + ["<p>No verification yet: run <code>facetrain eval RUN</code>.</p>"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in sets)
    rows = "".join(
        f"<tr><td>{label}</td>"
        + "".join(f"<td>{_fmt(m.get(k, ''))}</td>" for m in sets.values())
        + "</tr>"
        for k, label in ROWS
    )
    parts.append(f"<table><tr><th>metric</th>{head}</tr>{rows}</table>")
    return parts + [f"<p>{html.escape(n)}: {html.escape(m['note'])}</p>"
                    for n, m in sets.items() if m.get("note")]  # fmt: skip


def _roc(run: Path, tmp: Path) -> list[str]:
    """The ROC plot of `facetrain eval`'s RUN/eval/roc.csv, or how to make one."""
    from facetrain.evaluate.model_eval import read_roc

    roc = run / "eval" / "roc.csv"
    if not roc.exists():
        return ["<h2>ROC</h2>", "<p>No ROC yet: <code>facetrain eval RUN --pairs … --images …"
                "</code> writes RUN/eval/roc.csv.</p>"]  # fmt: skip
    try:
        png = plot_roc(read_roc(roc), tmp / "roc.png")
    except (OSError, ValueError, KeyError, TypeError) as e:  # a row short, or not a number
        why = f"{roc} cannot be read: {type(e).__name__} {e}"
        return ["<h2>ROC</h2>", f"<p>No ROC: {html.escape(why)}.</p>"]
    return ["<h2>ROC</h2>", _img(png, "ROC: true accepts against false accepts, each set")]
