"""Pictures of a model: learning curves, ROC curves, an embedding map (PNG, matplotlib Agg).

Learning curves read a run's `metrics.jsonl`, the one log every run writes, so any run —
finished, interrupted or still going — can be drawn and several runs compared on one figure.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from facetrain.progress import counted
from facetrain.run_folder import read_metrics

# (title, source, key): source "train" = step lines, "epoch" = epoch-end lines, else an eval.
PANELS = (
    ("training loss", "train", "loss"),
    ("learning rate", "train", "lr"),
    ("margin (margin_warmup_epochs)", "train", "margin"),
    ("training accuracy (batch)", "train", "acc"),
    ("validation-split accuracy", "val_split", "accuracy"),
    ("verification accuracy", "verify", "accuracy"),
    ("VAL @ FAR=1e-3", "verify", "val"),
)


VERIFY_PANELS = {title for title, source, _ in PANELS if source == "verify"}

# Fonts that hold the scripts DejaVu Sans lacks (Chinese, Japanese, Korean, Devanagari...):
# the first of these a machine has draws a label's glyphs DejaVu cannot, so a name in any
# script reads as itself, not as empty boxes
FALLBACK_FONTS = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "Source Han Sans",
    "WenQuanYi Zen Hei", "Droid Sans Fallback", "Noto Sans Devanagari", "Noto Sans Tamil",
    "Noto Sans Bengali", "Noto Sans Arabic", "Noto Sans Hebrew", "Noto Sans Thai",
    "Microsoft YaHei", "Yu Gothic", "Malgun Gothic", "Nirmala UI", "Hiragino Sans",
    "PingFang SC", "Apple SD Gothic Neo", "Arial Unicode MS",
)  # fmt: skip


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # a weight it lacks
    have = {f.name for f in font_manager.fontManager.ttflist}
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", *(f for f in FALLBACK_FONTS if f in have)]
    return plt


def verify_set(lines: list[dict]) -> str | None:
    """The verification set a run's "verification" panels draw: its first one."""
    return next((x["eval"] for x in lines if x.get("eval") not in (None, "val_split")), None)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def curves(lines: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Panel title → (steps, values) for the panels this run has data for."""
    verify = verify_set(lines)
    out = {}
    for title, source, key in PANELS:
        if source == "train":
            rows = [x for x in lines if "eval" not in x and not x.get("epoch_end")]
        elif source == "verify":
            rows = [x for x in lines if x.get("eval") == verify]
        else:
            rows = [x for x in lines if x.get("eval") == source]
        # a resumed run re-logs: last wins; a line of another writer's (no step, a value
        # that is not a number) is no point of a curve
        pts = {x["step"]: x[key] for x in rows if _number(x.get("step")) and _number(x.get(key))}
        if pts:
            steps = np.array(sorted(pts))
            out[title] = (steps, np.array([pts[s] for s in steps], dtype=float))
    return out


def plot_runs(runs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """One figure, a panel per metric, a line per run."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    names = [Path(r).name for r in runs]
    if len(set(names)) < len(names):  # same folder names: show the paths
        names = [str(r) for r in runs]
    logs = {n: read_metrics(r) for n, r in zip(names, runs)}
    data = {n: curves(lines) for n, lines in logs.items()}
    sets = {verify_set(lines) for lines in logs.values()} - {None}
    on = f" ({sets.pop()})" if len(sets) == 1 else ""  # the set the runs share, said once
    titles = [t for t, _, _ in PANELS if any(t in d for d in data.values())]
    if not titles:
        raise ValueError(f"{', '.join(map(str, runs))}: no metrics logged yet")
    cols = min(3, len(titles))
    rows = -(-len(titles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    # one step axis for every panel: a verification logged once sat alone on an axis of
    # its own (steps 325 to 355), nowhere to be seen against the loss beside it
    last = max((max(x, default=0) for d in data.values() for x, _ in d.values()), default=0)
    # a run keeps its colour in every panel: drawn in the order of each panel's own lines,
    # a run alone on a panel took the first run's colour there
    colour = {name: f"C{i % 10}" for i, name in enumerate(data)}
    for ax, title in zip(axes.flat, titles):
        if last > 0:
            ax.set_xlim(0, last * 1.03)
        for name, d in data.items():
            if title in d:
                x, y = d[title]
                ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=name,
                        color=colour[name])  # fmt: skip
        ax.set_title(title + (on if title in VERIFY_PANELS else ""))
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no step 0.25 on a short run
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(titles) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_roc(rocs: dict[str, tuple[np.ndarray, np.ndarray]], out: str | os.PathLike) -> Path:
    """ROC curves (TAR against FAR, log FAR axis) for one or more sets or models."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, (fpr, tpr) in rocs.items():
        keep = fpr > 0
        ax.plot(fpr[keep], tpr[keep], label=name)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("ROC")
    fig.tight_layout()
    return _save(fig, out)


def plot_embeddings(
    emb: np.ndarray, labels: list[str], out: str | os.PathLike, seed: int = 0
) -> Path:
    """A 2-D t-SNE map of the embeddings, a colour per identity."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    perplexity = float(min(30, max(2, (len(emb) - 1) // 3)))
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb)
    names = sorted(set(labels))
    idx = np.array([names.index(x) for x in labels])
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20" if len(names) <= 20 else "hsv")
    ax.scatter(xy[:, 0], xy[:, 1], c=idx, cmap=cmap, s=12, vmin=0, vmax=max(1, len(names) - 1))
    if len(names) <= 20:
        for k, n in enumerate(names):
            ax.annotate(n, label_spot(xy[idx == k]), fontsize=7, ha="center")
    ax.set_title(
        f"t-SNE of {counted(len(emb), 'face')}, {counted(len(names), 'identity', 'identities')}"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, out)


def label_spot(points: np.ndarray) -> np.ndarray:
    """Where an identity's name goes on a map: on its point with the nearest half of the
    others closest (a medoid under the median), so a few faces far from the rest — an
    identity t-SNE splits — do not pull the name into another identity's crowd, as their
    mean would. Past LABEL_SAMPLE points, among a fixed sample of them: all pairs of 20,000
    faces would take 6 GB."""
    if len(points) > LABEL_SAMPLE:
        points = points[np.random.default_rng(0).choice(len(points), LABEL_SAMPLE, replace=False)]
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return points[np.argmin(np.median(gaps, axis=1))]


LABEL_SAMPLE = 1000  # an identity's points a name's place is chosen among, at most


def _save(fig, out: str | os.PathLike) -> Path:
    from facetrain import atomic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    _pyplot().close(fig)
    return out
