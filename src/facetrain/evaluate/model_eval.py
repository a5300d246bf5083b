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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facetrain.distances import pair_distances
from facetrain.errors import FacetrainError
from facetrain.evaluate.sets import METRIC_KEYS, EvalSet, usable_pairs
from facetrain.evaluate.verification import evaluate, grids
from facetrain.inference.feed import embed_model
from facetrain.inference.parts import embed_in_parts, going_on, kept_in_cache, kept_until_done

TAR_FARS = (1e-1, 1e-2, 1e-3, 1e-4)


def evaluate_set(
    model,
    s: EvalSet,
    *,
    flip=None,
    distance="squared_l2",
    subtract_mean=False,
    device="cpu",
    progress: bool | Callable[[int], None] = True,
    workers: int = 0,
    parts: Path | None = None,
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Metrics of one set and its ROC (fpr, tpr at every distinct distance): the one
    "evaluate a set" of `facetrain eval` and of verification during training. `parts`: where
    the embedding of a set of photos is kept as it goes (`inference.parts`). `progress`: a
    bar of its own, none, or the caller's `advance(n)` (a training run's bar)."""
    from sklearn.metrics import roc_curve

    emb = _embed_set(model, s, flip, device, progress, workers, parts)
    s, _ = usable_pairs(s, emb)
    if len(s.issame) == 0:
        gone = f"; not there: {s.absent[0]}, …" if s.absent else ""
        raise EvalError(f"{s.name}: no pair has both images usable ({s.missing} missing{gone})")
    e1, e2 = emb[s.idx1], emb[s.idx2]
    kw = dict(fold_ids=s.fold, distance=distance, subtract_mean=subtract_mean)
    r = evaluate(e1, e2, s.issame, **kw)
    out = {k: r[k] for k in METRIC_KEYS}
    out |= {"pairs_used": int(len(s.issame)), "pairs_missing": int(s.missing)}
    out["tar_at_far"] = {
        f"{t:g}": evaluate(e1, e2, s.issame, far_target=t, **kw)["val"] for t in TAR_FARS
    }
    out["fold_accuracy"] = r["fold_accuracy"]
    unusable = dict.fromkeys(s.absent, "no such file")
    if s.images is not None:
        unusable |= {s.images.paths[i]: w for i, w in s.images.problems.items()}
    if unusable:
        out["unusable_images"] = unusable
    d = pair_distances(e1, e2, distance)
    fpr, tpr, _ = roc_curve(s.issame, -d)
    notes = [unresolved(d[~s.issame], np.trapezoid(tpr, fpr), float(grids(distance)[0][1])),
             unbalanced(s.issame, s.missing)]  # fmt: skip
    note = "; ".join(n for n in notes if n)
    return (out | {"note": note} if note else out), (fpr, tpr)


def _embed_set(model, s: EvalSet, flip, device: str, progress, workers: int,
               parts: Path | None) -> np.ndarray:  # fmt: skip
    """The set's embeddings; a set of photos with `parts` in the one resumable embedding, its
    problems (images without a face) told to the set as an embedding run there tells them."""
    if parts is None or s.images is None:
        shown = progress if callable(progress) else f"embed {s.name}" if progress else None
        return embed_model(model, s, flip=flip, device=device, progress=shown, workers=workers)
    from facetrain.inference.embedder import FaceEmbedder

    emb, problems = embed_in_parts(
        FaceEmbedder(model, device), s.images, parts, align=s.images.align, flip=flip,
        progress=progress, workers=workers, title=f"embed {s.name}",
        starting=going_on if progress else None,
    )  # fmt: skip
    s.images.problems.update(problems)
    return emb


def unresolved(different: np.ndarray, exact_auc: float, step: float) -> str | None:
    """Why the protocol's figures say nothing, when most different people's pairs lie under
    its first threshold step (`different`: their distances): its figures cannot tell any
    pair from another there (a model that puts nearly every face in one place, early in
    training), though the ROC can. `step`: the protocol's first threshold step."""
    share = float(np.mean(different < step)) if len(different) else 0.0
    if share < 0.5:
        return None
    return (f"{share:.0%} of the different people's pairs are nearer than the protocol's "
            f"first threshold step ({step:g}), where its figures (accuracy, VAL and TAR at "
            "FAR, AUC, EER) cannot tell pairs apart: the model puts nearly every face in one "
            f"place; the ROC, at every distinct distance, has AUC {exact_auc:.4f}")  # fmt: skip


def unbalanced(same: np.ndarray, dropped: int) -> str | None:
    """Why accuracy's chance is not 50%: the pairs dropped (images not there, or with no
    face) left far more pairs of one kind than of the other (a partial LFW, say)."""
    share = float(np.mean(same)) if len(same) else 0.5
    if not dropped or abs(share - 0.5) <= 0.1:
        return None
    word, most = ("same", share) if share > 0.5 else ("different", 1 - share)
    return (f"the {dropped:,} pairs dropped left {most:.0%} of the {len(same):,} pairs used "
            f"{word}-person pairs: '{word}' said of every pair scores {most:.0%} accuracy, "
            "not 50%")  # fmt: skip


def summary_line(name: str, r: dict) -> str:
    return (
        f"{name}: accuracy {r['accuracy']:.4f} ± {r['accuracy_std']:.4f}, "
        f"VAL {r['val']:.4f} ± {r['val_std']:.4f} @ FAR {r['far']:.4f}, "
        f"AUC {r['auc']:.4f}, EER {r['eer']:.4f}, threshold {r['threshold']:.3f} "
        f"({r['pairs_used']} pairs, {r['pairs_missing']} missing)"
    ) + (f"\n  note: {r['note']}" if r.get("note") else "")


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


@dataclass
class Evaluation:
    results: dict[str, dict]  # set name → metrics
    rocs: dict[str, tuple[np.ndarray, np.ndarray]]
    about: dict


def evaluate_model(
    model,
    pairs: list[tuple[str, str]] = (),
    bins: list[str] = (),
    *,
    align: str = "auto",
    flip: str | None = None,
    distance: str = "squared_l2",
    subtract_mean: bool = False,
    device: str = "cpu",
    out: str | os.PathLike | None = None,
    on_set=None,
    workers: int = 0,
) -> Evaluation:
    """A model on (pairs.txt, image folder) sets and .bin sets; with `out`, every output
    written there. `on_set(name, metrics)` is called as each set finishes."""
    from facetrain.distances import ALIASES, DISTANCES
    from facetrain.evaluate.sets import bin_set, pairs_set
    from facetrain.inference.feed import FLIPS
    from facetrain.inference.sources import ALIGN_MODES

    distance = ALIASES.get(distance, distance)
    _check_choice("distance", distance, DISTANCES)
    _check_choice("flip", flip or model.pre.flip, FLIPS)
    _check_choice("align", align, ALIGN_MODES)
    if not pairs and not bins:
        raise EvalError("give --pairs with --images, and/or --bin")
    flip = flip or model.pre.flip
    try:
        sets = [pairs_set(str(p), str(i), alignment=model.pre.alignment, align=align)
                for p, i in pairs]  # fmt: skip
        sets += [bin_set(str(b)) for b in bins]
    except (OSError, ValueError) as e:  # the reader's messages name the file and the reason
        raise EvalError(str(e)) from None
    if out is not None:
        _output_folder(out, [*(i for _, i in pairs), *bins])
    ev = Evaluation({}, {}, about(model, flip, distance, subtract_mean))
    names = _set_names(sets)
    # each set's embedding is kept until the outputs are written: in `out`, else the cache
    kept = [Path(out) / f"{n}.partial" if out is not None else
            kept_in_cache("eval", model.source, Path(p).resolve(), Path(i).resolve())
            for n, (p, i) in zip(names, pairs)] + [None] * len(bins)  # fmt: skip
    with kept_until_done(*kept):
        for s, name, parts in zip(sets, names, kept):
            r, curve = evaluate_set(
                model, s, flip=flip, distance=distance, subtract_mean=subtract_mean,
                device=device, workers=workers, parts=parts,
            )  # fmt: skip
            ev.results[name], ev.rocs[name] = r, curve
            if on_set is not None:
                on_set(name, r)
        if out is not None:
            write_outputs(out, ev.results, ev.rocs, ev.about)
    return ev


def _output_folder(out: str | os.PathLike, inputs: list) -> None:
    """Refuse, before any work, an `out` that would mix with the data or overwrite files
    of the user's: a folder inside an input, or one holding things but no evaluation of
    ours (its metrics.json, or the kept parts of one cut short)."""
    from facetrain import atomic, foreign

    atomic.output_folder(out, inputs=inputs, own=("metrics.json", "*.partial", "*.partial.lock"),
                         kind="evaluation")  # fmt: skip
    metrics = Path(out) / "metrics.json"
    if not metrics.exists():
        return
    got = foreign.read_json(metrics)[0]
    if not (isinstance(got, dict) and "sets" in got):
        raise atomic.OutputError(f"{metrics}: not the metrics of a facetrain evaluation; "
                                 "give a new or empty folder for --out")  # fmt: skip


def _set_names(sets: list[EvalSet]) -> list[str]:
    """Each set's name in the results: its own, or with its place added where taken."""
    names: list[str] = []
    for s in sets:
        names.append(s.name if s.name not in names else f"{s.name}_{len(names)}")
    return names


class EvalError(FacetrainError):
    """Sets or settings an evaluation cannot use."""


def _check_choice(what: str, value: str, allowed) -> None:
    if value not in allowed:
        raise EvalError(f"--{what} {value!r}: choose from {', '.join(allowed)}")
