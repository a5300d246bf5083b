"""`facetrain eval`: a saved model on verification sets → metrics, per-fold CSV, ROC.

Everything a reader of the numbers needs is written next to them: the metrics JSON
(accuracy ± std, VAL ± std @ FAR, AUC, EER, threshold, TAR at FAR 1e-1…1e-4, pairs used
and missing, with the images that could not be used and why), `folds.csv`, the ROC points
(`roc.csv`, every distinct threshold) and `roc.png`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facetrain.evaluate.sets import METRIC_KEYS, EvalSet, embed_model, usable_pairs
from facetrain.evaluate.verification import evaluate, pair_distances

TAR_FARS = (1e-1, 1e-2, 1e-3, 1e-4)


def evaluate_set(
    model, s: EvalSet, *, flip=None, distance="euclidean", subtract_mean=False, device="cpu"
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Metrics of one set and its ROC (fpr, tpr at every distinct distance)."""
    from sklearn.metrics import roc_curve

    emb = embed_model(model, s, flip=flip, device=device, progress=f"embed {s.name}")
    s, _ = usable_pairs(s, emb)
    if len(s.issame) == 0:
        raise ValueError(f"{s.name}: no pair has both images usable ({s.missing} missing)")
    e1, e2 = emb[s.idx1], emb[s.idx2]
    kw = dict(fold_ids=s.fold, distance=distance, subtract_mean=subtract_mean)
    r = evaluate(e1, e2, s.issame, **kw)
    out = {k: r[k] for k in METRIC_KEYS}
    out |= {"pairs_used": int(len(s.issame)), "pairs_missing": int(s.missing)}
    out["tar_at_far"] = {
        f"{t:g}": evaluate(e1, e2, s.issame, far_target=t, **kw)["val"] for t in TAR_FARS
    }
    out["fold_accuracy"] = r["fold_accuracy"]
    if s.images is not None and s.images.problems:
        out["unusable_images"] = {s.images.paths[i]: w for i, w in s.images.problems.items()}
    fpr, tpr, _ = roc_curve(s.issame, -pair_distances(e1, e2, distance))
    return out, (fpr, tpr)


def summary_line(name: str, r: dict) -> str:
    return (
        f"{name}: accuracy {r['accuracy']:.4f} ± {r['accuracy_std']:.4f}, "
        f"VAL {r['val']:.4f} ± {r['val_std']:.4f} @ FAR {r['far']:.4f}, "
        f"AUC {r['auc']:.4f}, EER {r['eer']:.4f}, threshold {r['threshold']:.3f} "
        f"({r['pairs_used']} pairs, {r['pairs_missing']} missing)"
    )


def write_outputs(
    out: str | os.PathLike,
    results: dict[str, dict],
    rocs: dict[str, tuple[np.ndarray, np.ndarray]],
    about: dict,
) -> Path:
    """OUT/metrics.json, folds.csv, roc.csv and roc.png (written atomically)."""
    from facetrain import atomic
    from facetrain.evaluate.plots import plot_roc

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "metrics.json", json.dumps(combined(results, about), indent=2) + "\n")
    write_folds(out / "folds.csv", results)
    with atomic.atomic_open(out / "roc.csv", "w") as f:
        w = csv.writer(f)
        w.writerow(["set", "fpr", "tpr"])
        for name, (fpr, tpr) in rocs.items():
            w.writerows([name, f"{a:.6g}", f"{b:.6g}"] for a, b in zip(fpr, tpr))
    plot_roc(rocs, out / "roc.png")
    return out


def combined(results: dict[str, dict], about: dict) -> dict:
    """The first set's metrics at the top level (the documented interface), all sets under
    `sets`, and how they were computed."""
    first = next(iter(results.values()))
    return first | {"sets": results} | about


def write_folds(path: str | os.PathLike, results: dict[str, dict]) -> None:
    from facetrain import atomic

    with atomic.atomic_open(path, "w") as f:
        w = csv.writer(f)
        w.writerow(["set", "fold", "accuracy"])
        for name, r in results.items():
            w.writerows([name, i, f"{a:.6f}"] for i, a in enumerate(r["fold_accuracy"]))


def read_roc(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rows: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["set"], []).append((float(r["fpr"]), float(r["tpr"])))
    return {k: (np.array([a for a, _ in v]), np.array([b for _, b in v])) for k, v in rows.items()}


def about(model, flip: str, distance: str, subtract_mean: bool) -> dict:
    return {
        "model": model.source,
        "backend": model.backend,
        "preprocess": asdict(model.pre),
        "flip": flip,
        "distance": distance,
        "subtract_mean": subtract_mean,
    }
