"""What a run measures while it trains, and the threshold it ships.

The run's preprocessing record is built once, at the start (`preprocess_for`): verification
during training feeds faces exactly as the saved model will be fed later, through the same
`evaluate_set` that `facetrain eval` uses. `Evaluator` scores the classifier on the pack's
val split where its identities are trained on (a split by image), verifies the pairs of
those that are not (a split by identity: `val_unseen`; a metric loss's whole val split:
`val_pairs`), and every verification set given; the first set decides the `best`
checkpoint. `export_weights` writes the final model with a threshold: the first set's,
or one validated on the val split's pairs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from facetrain.data.packed import PackedDataset
from facetrain.evaluate.model_eval import evaluate_set
from facetrain.evaluate.sets import METRIC_KEYS, EvalSet, bin_set, pairs_set
from facetrain.evaluate.verification import labelled_pair_ids
from facetrain.inference.feed import embed_model, prepare
from facetrain.inference.record import Preprocess, save_model
from facetrain.inference.saved import FaceModel
from facetrain.losses import cross_entropy
from facetrain.progress import step_task
from facetrain.run_folder import WEIGHTS
from facetrain.train.settings import EvalSettings, TrainConfig
from facetrain.train.state import TrainingError

# The val split as verification sets (`val_pairs`): its identities not trained on, or
# every image of it (a metric loss, no classifier)
UNSEEN, VAL_PAIRS = "val_unseen", "val_pairs"
MAX_SCORED = 20_000  # val images the classifier is scored on at each evaluation, at most

# What faces without an alignment record are taken for
STANDARD_ALIGNMENT = {"mode": "similarity", "size": 112}


def alignment_record(cfg: TrainConfig, pack: Path | None = None) -> dict | None:
    """How the training faces were aligned, as `facetrain align` (or `rewarp`) recorded it
    beside them (`pack` keeps it); None without a record."""
    from facetrain.data.alignment import read_alignment

    for root in ([pack] if pack else []) + [Path(d) for d in cfg.data.paths]:
        if (record := read_alignment(root)) is not None:
            return record
    return None


def preprocess_for(cfg: TrainConfig, size: int, pack: Path | None = None) -> Preprocess:
    """The record saved with the weights: how every later user must prepare faces. The
    alignment is the one `facetrain align` (or `rewarp`) recorded with the faces, which
    `pack` keeps; without a record, the standard 112x112 five-point crop."""
    alignment = alignment_record(cfg, pack) or dict(STANDARD_ALIGNMENT)
    return Preprocess(
        model=cfg.model.arch,
        embedding_size=cfg.model.embedding_size,
        input_size=size,
        normalize=cfg.data.normalize,
        crop=cfg.data.crop or None,
        alignment=alignment,
        flip=cfg.eval.flip,
        distance=cfg.eval.distance,
    )


@torch.no_grad()
def validation_split(model, objective, val: PackedDataset, pre: Preprocess, device: str,
                     ids: np.ndarray, advance=lambda n: None) -> dict:  # fmt: skip
    """Loss and top-1 accuracy of the classifier on the val split's images `ids`: those of
    identities it is trained on (others it cannot name). `advance(n)`: a bar's, as it goes."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(ids), 256):
        xb, y = val.batch(ids[i : i + 256].tolist())
        x = prepare(xb, size=pre.input_size, normalize=pre.normalize, crop=pre.crop)
        raw = model.embed(x.to(device), normalize=False).float()
        y = objective.rows(y).to(device)  # mapped where the labels are, as in training
        logits = objective.logits(raw, y, objective.head)
        total += float(cross_entropy(logits, y)) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        advance(len(y))
    return {"loss": total / n, "accuracy": correct / n}


def val_pairs(val: PackedDataset, ids: np.ndarray, name: str, max_pairs: int = 6000) -> EvalSet:
    """The val split's images `ids` as verification pairs: every same pair (at most
    max_pairs/2) and as many different ones, in ten folds balanced alike. What the
    classifier cannot score — identities it never trains on (a split by identity: its
    accuracy there is 0 whatever was learnt), or every image for a metric loss — is
    measured so."""
    pairs, issame = labelled_pair_ids(val.labels[ids], max_same=max_pairs // 2)
    if issame.all():  # one identity (unlabelled faces): no different pair to tell apart
        raise ValueError("one identity only")
    used, pairs = np.unique(pairs, return_inverse=True)  # only the images the pairs hold
    pairs, ids = pairs.reshape(-1, 2), ids[used]
    fold = np.concatenate([np.arange(int(issame.sum())), np.arange(int((~issame).sum()))]) % 10
    return EvalSet(name, len(ids), lambda k: list(val.batch(ids[k].tolist())[0]),
                   pairs[:, 0], pairs[:, 1], issame, fold)  # fmt: skip


def sampled(ids: np.ndarray, most: int | None = None) -> np.ndarray:
    """At most `most` (MAX_SCORED) of ids, the same ones each time (a fixed seed), in
    order: scoring a million val images at every evaluation would outlast the training."""
    most = MAX_SCORED if most is None else most
    if len(ids) <= most:
        return ids
    return np.sort(np.random.default_rng(0).choice(ids, most, replace=False))


class Evaluator:
    """The val split and the verification sets, on the main process only. `source`: what
    the model is called while it trains (the run folder); `trained`: the labels it trains
    on; `classifies`: whether the objective has a classifier to score the val split with
    (what it cannot score is measured by its pairs)."""

    def __init__(self, cfg: EvalSettings, pre: Preprocess, val: PackedDataset, device: str,
                 source: str, log, emit, trained: np.ndarray | None = None,
                 classifies: bool = True):  # fmt: skip
        self.cfg, self.pre, self.val, self.log, self.emit = cfg, pre, val, log, emit
        self.device, self.source = device, source
        seen = np.ones(len(val), bool) if trained is None else np.isin(val.labels, trained)
        self.known = sampled(np.flatnonzero(seen if classifies else np.zeros(len(val), bool)))
        if classifies and len(self.known) < seen.sum():
            log(f"the classifier is scored on {len(self.known):,} of the val split's "
                f"{int(seen.sum()):,} images of identities it trains on (the same ones at "
                "each evaluation)")  # fmt: skip
        try:  # before the first step: a missing or damaged set is a clear error, not a crash
            self.sets: list[EvalSet] = [bin_set(b) for b in cfg.bins]
            if cfg.pairs:
                # standard 112x112 crops are re-warped into a model geometry of its own (a
                # template); other faces are taken as they are
                align = "auto" if pre.alignment.get("template") else "never"
                s = pairs_set(cfg.pairs, cfg.images, cfg.max_pairs, pre.alignment, align)
                self.sets.insert(0, s)
        except (OSError, ValueError) as e:
            raise TrainingError(f"verification set: {e}") from None
        for s in self.sets:
            if s.missing:
                log(f"verification on {s.name}: {s.missing_note()} (skipped)")
        paired = np.flatnonzero(~seen) if classifies else np.arange(len(val))
        if len(paired):
            self._add_pairs(paired, unseen=not seen[paired].any(), classifies=classifies)

    def _add_pairs(self, ids: np.ndarray, unseen: bool, classifies: bool) -> None:
        """The val split's images the classifier does not score, measured by their pairs
        (after the verification sets given: the first of those still decides `best`)."""
        whose = " of identities not trained on" if unseen else ""
        try:
            s = val_pairs(self.val, ids, UNSEEN if unseen else VAL_PAIRS)
        except ValueError:  # no identity among them has two images, or one identity only
            self.log(f"the val split's {len(ids):,} images{whose} give no same and different "
                     "pairs to measure them by")  # fmt: skip
            return
        self.sets.append(s)
        why = ", not by the classifier, which cannot name them" if classifies else ""
        self.log(f"the val split's {len(ids):,} images{whose}: measured by verification of "
                 f"their {len(s.issame):,} pairs ({s.name}){why}")  # fmt: skip

    def __call__(self, model, objective, state, epoch: int, bar=None) -> tuple[str, ...]:
        """Evaluate now; the checkpoint pointers to set ('best' when the first set's
        accuracy is the best yet). `bar`: the run's, on which each set shows as it is
        embedded (LFW's 7,701 images: 45 s for nn4.small2 at 80² on 2 cores, more for larger
        networks)."""
        cfg, pointers = self.cfg, ("last",)
        if objective.classifies and len(self.known):
            with step_task(bar, "score the val split", len(self.known)) as advance:
                v = validation_split(model, objective, self.val, self.pre, self.device,
                                     self.known, advance)  # fmt: skip
            self.emit({"eval": "val_split", "epoch": epoch, "step": state.step} | v)
            self.log(f"epoch {epoch} step {state.step}: val split accuracy "
                     f"{v['accuracy']:.4f}, loss {v['loss']:.4f}")  # fmt: skip
        fm = FaceModel.of_module(model, self.pre, self.source)
        for k, s in enumerate(self.sets):
            with step_task(bar, f"verify on {s.name}", s.n_images) as advance:
                full, _ = evaluate_set(fm, s, flip=cfg.flip, distance=cfg.distance,
                                       subtract_mean=cfg.subtract_mean, device=self.device,
                                       progress=advance)  # fmt: skip
            r = {
                k: full[k]
                for k in (*METRIC_KEYS, "pairs_used", "pairs_missing", "note")
                if k in full
            }  # (the note, where the figures say nothing: in the report too)
            self.emit({"eval": s.name, "epoch": epoch, "step": state.step} | r)
            self.log(
                f"epoch {epoch} step {state.step}: {s.name} accuracy {r['accuracy']:.4f} "
                f"± {r['accuracy_std']:.4f}, VAL {r['val']:.4f}"
                + (f"\n  note: {r['note']}" if "note" in r else "")
            )
            if k == 0:  # the first set decides "best"
                state.last_eval = r | {"set": s.name}
                if r["accuracy"] > state.best:
                    state.best, pointers = r["accuracy"], ("last", "best")
        return pointers


def val_threshold(model, pre: Preprocess, val: PackedDataset, device: str,
                  source: str) -> float | None:  # fmt: skip
    """A verification threshold validated on the val split's own pairs (for runs without a
    verification set), in the model's distance; None when no val identity has two images.
    At most MAX_SCORED of its images, a fixed sample (`sampled`), are embedded, under a bar
    of their own: the labels come from the pack's index, not from decoding every image."""
    from facetrain.evaluate.verification import labelled_threshold

    ids = sampled(np.arange(len(val)))
    labels = val.labels[ids].tolist()
    if len(set(labels)) == len(labels):  # (fewer than two images too)
        return None
    none = np.zeros(0, np.int64)
    s = EvalSet("val", len(ids), lambda k: list(val.batch(ids[k].tolist())[0]), none, none,
                none, None)  # fmt: skip
    emb = embed_model(FaceModel.of_module(model, pre, source), s, device=device,
                      progress="threshold on the val split")  # fmt: skip
    return labelled_threshold(emb, labels, pre.distance)


def export_weights(run: Path, model, pre: Preprocess, device: str, last_eval: dict,
                   val: PackedDataset) -> Path:  # fmt: skip
    """RUN/model.safetensors: the final backbone with its preprocessing record."""
    threshold, source = last_eval.get("threshold"), ""
    if threshold is not None:
        where = last_eval.get("set", "the verification set")
        source = f"mean best-accuracy threshold over the folds of {where}"
    else:
        threshold = val_threshold(model, pre, val, device, str(run))
        source = "best-accuracy threshold on the val split's pairs" if threshold is not None else ""
    pre = dataclasses.replace(pre, threshold=threshold, threshold_source=source)
    return save_model(run / WEIGHTS, model, pre)
