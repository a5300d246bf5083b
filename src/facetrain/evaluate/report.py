"""`facetrain report RUN`: one self-contained HTML page about a run.

Learning curves (from metrics.jsonl), the final metrics table (from `facetrain eval`'s
RUN/eval/metrics.json, else the run's last logged verification) and the ROC
(RUN/eval/roc.csv). Images are embedded as data URIs so the page can be mailed or
attached to an issue as one file.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from pathlib import Path

from facetrain.evaluate.plots import plot_roc, plot_runs
from facetrain.run_folder import CONFIG, REVISION, read_metrics

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
        return json.loads(ev.read_text())["sets"], f"facetrain eval ({ev})"
    last: dict[str, dict] = {}
    for line in read_metrics(run):
        if "eval" in line and line["eval"] != "val_split":
            last[line["eval"]] = line
    return last, "the last verification logged during training (metrics.jsonl)"


def write_report(run: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    from facetrain import atomic
    from facetrain.evaluate.model_eval import read_roc

    run = Path(run)
    out = Path(out) if out else run / "report.html"
    sets, source = final_metrics(run)
    parts = [
        "<!doctype html><html lang='en'><meta charset='utf-8'>",
        f"<title>facetrain report: {html.escape(run.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;"
        "text-align:right}th:first-child,td:first-child{text-align:left}</style>",
        f"<main><h1>facetrain run <code>{html.escape(str(run))}</code></h1>",
    ]
    cfg = run / CONFIG
    if cfg.exists():
        c = json.loads(cfg.read_text())
        keys = ("model", "loss", "embedding_size", "input_size", "epochs", "batch_size", "lr")
        parts.append(
            "<p>" + ", ".join(f"{k} <b>{html.escape(str(c.get(k)))}</b>" for k in keys) + "</p>"
        )
    rev = run / REVISION
    if rev.exists():  # the revision it started from, then what changed on each resume
        first, *later = rev.read_text().splitlines() or [""]
        parts.append(f"<p>code revision <code>{html.escape(first)}</code></p>")
        if later:
            items = "".join(f"<li>{html.escape(line)}</li>" for line in later)
            parts.append(f"<ul>{items}</ul>")
    with tempfile.TemporaryDirectory() as tmp:
        parts.append("<h2>Learning curves</h2>")
        curves = plot_runs([run], Path(tmp) / "curves.png")
        parts.append(_img(curves, "the run's loss, learning rate and verification by step"))
        parts.append(f"<h2>Final metrics</h2><p>from {html.escape(source)}</p>")
        if sets:
            names = list(sets)
            head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
            rows = "".join(
                f"<tr><td>{label}</td>"
                + "".join(f"<td>{_fmt(sets[n].get(k, ''))}</td>" for n in names)
                + "</tr>"
                for k, label in ROWS
            )
            parts.append(f"<table><tr><th>metric</th>{head}</tr>{rows}</table>")
            parts += [f"<p>{html.escape(n)}: {html.escape(sets[n]['note'])}</p>"
                      for n in names if sets[n].get("note")]  # fmt: skip
        else:
            parts.append("<p>No verification yet: run <code>facetrain eval RUN</code>.</p>")
        roc = run / "eval" / "roc.csv"
        parts.append("<h2>ROC</h2>")
        if roc.exists():
            roc_png = plot_roc(read_roc(roc), Path(tmp) / "roc.png")
            parts.append(_img(roc_png, "ROC: true accepts against false accepts, each set"))
        else:
            parts.append(
                "<p>No ROC yet: <code>facetrain eval RUN --pairs … --images …</code> "
                "writes RUN/eval/roc.csv.</p>"
            )
    atomic.write_text(out, "\n".join(parts) + "\n</main>\n")
    return out
