"""Classify people from embeddings, and say `unknown` instead of forcing a name.

OpenFace's "classify people" demo trained an SVM on a handful of people and then named
every face it saw as one of them. Here a classifier (linear SVM, k-NN, logistic
regression or nearest centroid, scikit-learn) picks the most likely known person, and the
answer stands only when the photo library's open-set rule (`open_set.identify`) names the
same person: under each pair's limit — the threshold (the model's calibrated one, one
validated on the gallery's own pairs, or a number the user gives), tightened where the
known faces and the strangers shown at training crowd — and ahead of the runner-up. The
threshold alone named every stranger on East-Asian faces (bench/classify_populations.py).

A classifier file is the gallery itself (embeddings, labels, method, threshold, the model's
preprocessing record) in a plain `.npz`: no pickle, nothing executes on load, and the
scikit-learn estimator is refitted deterministically when loaded.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrain.distances import ALIASES, distance_matrix, threshold_problem
from facetrain.errors import FacetrainError
from facetrain.groups import by_label
from facetrain.open_set import MARGIN, UNKNOWN, Among, identify, identify_each

METHODS = ("svm", "knn", "logreg", "centroid")


def make_estimator(method: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
    from sklearn.svm import LinearSVC

    if method == "svm":
        return LinearSVC(C=1.0, random_state=0)
    if method == "knn":
        return KNeighborsClassifier(n_neighbors=1)
    if method == "logreg":
        return LogisticRegression(C=10.0, max_iter=2000)
    if method == "centroid":
        return NearestCentroid()
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def holdout_split(labels: list[str], test_fraction: float, seed: int = 0):
    """Per identity with ≥ 2 images: round(fraction × n) (at least 1, at most n − 1) held
    out for testing; identities with one image stay in training."""
    rng = np.random.default_rng(seed)
    _, group = np.unique(np.asarray(labels), return_inverse=True)  # in name order
    train, test = [], []
    for idx in by_label(group):  # each identity's images in their order
        idx = rng.permutation(idx)
        k = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        test += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


class ClassifyError(FacetrainError):
    """A classifier that cannot be made or used as asked."""


@dataclass
class Classifier:
    method: str
    embeddings: np.ndarray
    labels: list[str]
    threshold: float
    distance: str
    threshold_source: str
    model: str = ""
    preprocess: dict = field(default_factory=dict)
    context: np.ndarray | None = None  # strangers' faces shown at training: where faces crowd
    _est: object = None
    _among: Among | None = None
    _protos: tuple | None = None

    def fit(self) -> Classifier:
        self._est = make_estimator(self.method).fit(self.embeddings, self.labels)
        return self

    @property
    def rule(self) -> str:
        seen = "" if self.context is None else f" and {len(self.context)} strangers'"
        return (f"{self.method}'s choice, named when the open-set rule names it too: under "
                f"each pair's limit — {self.threshold:.3f} ({self.distance}, "
                f"{self.threshold_source}), tightened by the spacing of the known faces"
                f"{seen} — and {MARGIN} ahead of the runner-up; else unknown")  # fmt: skip

    @property
    def among(self) -> Among:
        """The known faces' spacing among all the faces seen, measured once for every
        photo predicted (10,000 known faces: 1 s a photo when measured each time,
        bench/classify_speed.py)."""
        if self._among is None:
            d = self.embeddings.shape[1]
            context = np.zeros((0, d)) if self.context is None else self.context
            self._among = Among.of(self.embeddings, context, self.threshold, self.distance)
        return self._among

    @property
    def protos(self) -> tuple:
        """The known faces as the open-set rule takes them (embeddings, person numbers,
        number → name), made once for every photo predicted."""
        if self._protos is None:
            people, pid = np.unique(np.asarray(self.labels), return_inverse=True)
            self._protos = (self.embeddings, pid.reshape(-1), dict(enumerate(people.tolist())))
        return self._protos

    def predict(self, emb: np.ndarray, one_photo: bool = False) -> list[dict]:
        """For each row: `name` (or `unknown`), `guess` (the classifier's choice), the
        distance to the guessed person's nearest known face and the threshold. With
        `one_photo` the rows are the faces of one photo, and a person is named on one of
        them at most, as `library identify` names a photo's faces; else each on its own."""
        if self._est is None:
            self.fit()
        if len(emb) == 0:
            return []
        guess = self._est.predict(emb)
        limits = self.among.limits(emb)
        name = identify if one_photo else identify_each
        found = name(emb, self.protos, self.threshold, self.distance, MARGIN, limits)
        dist = self._to_own_nearest(emb, guess)
        return [{"name": str(g) if r["name"] == g else UNKNOWN, "guess": str(g),
                 "distance": float(x), "threshold": self.threshold}
                for g, r, x in zip(guess, found, dist)]  # fmt: skip

    def _to_own_nearest(self, emb: np.ndarray, guess: np.ndarray) -> np.ndarray:
        """Each face's distance to the nearest known face of the person guessed for it."""
        labels_a, out = np.asarray(self.labels), np.empty(len(emb))
        for g in np.unique(guess):
            rows = np.flatnonzero(guess == g)
            own = self.embeddings[labels_a == g]
            out[rows] = distance_matrix(emb[rows], own, self.distance).min(1)
        return out


def evaluate_methods(
    emb: np.ndarray,
    labels: list[str],
    *,
    threshold: float,
    distance: str,
    test_fraction: float = 0.3,
    seed: int = 0,
    unknown: np.ndarray | None = None,
    methods=METHODS,
) -> dict[str, dict]:
    """Held-out figures per method: closed-set accuracy (forced names), open-set accuracy
    (a name only when the open-set rule agrees), and the share of strangers' faces
    (`unknown`) correctly refused — half of them held out, the other half shown to the
    classifier as the saved one is shown them all."""
    train, test = holdout_split(labels, test_fraction, seed)
    if len(test) == 0:
        raise ValueError("no identity has two images: nothing to hold out")
    lab = np.asarray(labels)
    context = None
    if unknown is not None and len(unknown) >= 2:
        order = np.random.default_rng(seed).permutation(len(unknown))
        context, unknown = unknown[order[::2]], unknown[order[1::2]]
    out = {}
    for m in methods:
        c = Classifier(m, emb[train], lab[train].tolist(), threshold, distance, "",
                       context=context).fit()  # fmt: skip
        pred = c.predict(emb[test])
        truth = lab[test]
        r = {
            "test_images": int(len(test)),
            "accuracy": float(np.mean([p["guess"] == t for p, t in zip(pred, truth)])),
            "open_set_accuracy": float(np.mean([p["name"] == t for p, t in zip(pred, truth)])),
        }
        if unknown is not None and len(unknown):
            r["unknown_rejected"] = float(
                np.mean([p["name"] == UNKNOWN for p in c.predict(unknown)])
            )
        out[m] = r
    return out


def save_classifier(path: str | os.PathLike, c: Classifier) -> Path:
    from facetrain import atomic

    meta = {
        "method": c.method,
        "threshold": c.threshold,
        "distance": c.distance,
        "threshold_source": c.threshold_source,
        "model": c.model,
        "preprocess": c.preprocess,
    }
    path = Path(path)
    with atomic.atomic_open(path, "wb") as f:
        context = {} if c.context is None else {"context": c.context.astype(np.float32)}
        np.savez(
            f,
            embeddings=c.embeddings.astype(np.float32),
            labels=np.array(c.labels, dtype=str),
            meta=np.array(json.dumps(meta)),
            **context,
        )
    return path


def load_classifier(path: str | os.PathLike) -> Classifier:
    import zipfile

    if not os.path.exists(path):  # (not "not a classifier file": it is not there)
        raise ValueError(f"{path}: no such file (a classifier is made by `facetrain "
                         "classify train DATA --out FILE`)")  # fmt: skip
    if os.path.isfile(path) and not zipfile.is_zipfile(path):  # numpy would advise pickle
        raise ValueError(f"{path}: not a facetrain classifier file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return Classifier(
                meta["method"],
                z["embeddings"],
                z["labels"].tolist(),
                float(meta["threshold"]),
                ALIASES.get(meta["distance"], meta["distance"]),
                meta["threshold_source"],
                meta.get("model", ""),
                meta.get("preprocess", {}),
                z["context"] if "context" in z.files else None,
            ).fit()
    except (OSError, KeyError, ValueError, TypeError) as e:  # TypeError: meta not a table
        raise ValueError(f"{path}: not a facetrain classifier file ({e})") from None


def choose_threshold(how: str, pre, embeddings: np.ndarray, labels: list[str]):
    """The classifier's "unknown" threshold and where it comes from. how: `auto` (the
    model's calibrated one, else validated on the labelled faces), `model`, `data`, or a
    number."""
    from facetrain.evaluate.verification import labelled_threshold

    if how in ("auto", "model") and pre.threshold is not None:
        return pre.threshold, f"the model's ({pre.threshold_source})"
    if how in ("auto", "data"):
        try:
            return labelled_threshold(embeddings, labels, pre.distance), "validated on DATA's pairs"
        except ValueError as e:
            raise ClassifyError(str(e)) from None
    if how == "model":
        raise ClassifyError(
            "the model has no calibrated threshold; use --threshold data or a number"
        )
    try:
        value = float(how)
    except ValueError:
        raise ClassifyError(f"--threshold {how!r}: auto, model, data or a number") from None
    if problem := threshold_problem(value, pre.distance):
        raise ClassifyError(f"--threshold {how!r}: {problem}")
    return value, "given"


@dataclass
class Trained:
    classifier: Classifier
    figures: dict  # method → held-out accuracy (forced, with unknown, strangers refused)
    notes: list[str] = field(default_factory=list)  # which face of each group photo, or why none


def group_faces(embeddings, labels, groups, threshold: float, distance: str):
    """From each group photo (PhotoFaces, person), the one face like the person's photos
    of one face: under the threshold of their nearest one, and the only such face. Returns
    (rows, their (label, path), a note per photo saying which face was learnt from or why none)."""
    lab, rows, took, notes = np.asarray(labels), [], [], []
    for photo, who in groups:
        own = embeddings[lab == who]
        n = len(photo.boxes)
        if not len(own):
            notes.append(f"refused {photo.path}: {n} faces, and no photo of {who} with one face "
                         "to tell which is theirs")  # fmt: skip
            continue
        near = distance_matrix(photo.embeddings, own, distance).min(1)
        like = np.flatnonzero(near < threshold)
        if len(like) != 1:
            why = "none" if not len(like) else f"{len(like)}"
            notes.append(f"refused {photo.path}: {n} faces, {why} like {who}'s other photos "
                         f"(threshold {threshold:.3f})")  # fmt: skip
            continue
        k = int(like[0])
        box = ", ".join(str(int(round(v))) for v in photo.boxes[k])
        notes.append(f"learnt from face {k + 1} of {n} (box {box}) in {photo.path}: the one "
                     f"like {who}'s other photos (distance {near[k]:.3f})")  # fmt: skip
        rows.append(photo.embeddings[k])
        took.append((who, photo.path))
    return rows, took, notes


def check_settings(method: str, test_fraction: float) -> None:
    """ClassifyError for a method or a held-out share that cannot be used, so that a
    command can say so before it embeds a face (a share of -1 or 5 trained in silence)."""
    if method not in METHODS:
        raise ClassifyError(f"--method {method!r}: choose from {', '.join(METHODS)}")
    if not 0.0 < test_fraction < 1.0:
        raise ClassifyError(f"--test-fraction {test_fraction}: a share in (0, 1)")


def check_people(names) -> None:
    """ClassifyError when the people of DATA cannot make a classifier: fewer than two of
    them, or none with two photos (nothing to hold out and measure), or one called what a
    stranger is answered (a face of theirs and a face of no one would both come back
    `unknown`, and the held-out figures would count the one as the other)."""
    count = Counter(names)
    if named := sorted(n for n in count if n.casefold() == UNKNOWN):
        raise ClassifyError(f"a person of DATA is named {named[0]!r}, as the answer for a face "
                            "of no known person: rename that folder (faces of people not among "
                            "these go to --unknown)")  # fmt: skip
    if len(count) < 2:
        who = f"1 person ({next(iter(count))})" if count else "no person"
        raise ClassifyError(f"DATA holds {who}: a classifier needs at least two people")
    if max(count.values()) < 2:
        raise ClassifyError("no person of DATA has two photos: nothing to hold out and measure")


def train_classifier(
    model,
    table,
    method: str = "svm",
    threshold: str = "auto",
    test_fraction: float = 0.3,
    strangers: np.ndarray | None = None,
    groups: list = (),
) -> Trained:
    """A classifier of `method` on an embedding table of the known people (and the face of
    each group photo in `groups` that is like the person's other photos: `group_faces`),
    and every method's held-out figures (with `strangers`' embeddings: how many are
    refused). The strangers stay with the classifier: the open-set rule measures how
    crowded the known faces are among them."""
    from dataclasses import asdict

    check_settings(method, test_fraction)
    check_people(table.labels)
    dist = model.pre.distance
    thr, src = choose_threshold(threshold, model.pre, table.embeddings, table.labels)
    rows, took, notes = group_faces(table.embeddings, table.labels, groups, thr, dist)
    if rows:
        table.embeddings = np.concatenate([table.embeddings, np.stack(rows).astype(np.float32)])
        table.labels = [*table.labels, *(who for who, _ in took)]
        table.paths = [*table.paths, *(path for _, path in took)]
    try:
        figures = evaluate_methods(table.embeddings, table.labels, threshold=thr, distance=dist,
                                   test_fraction=test_fraction, unknown=strangers)  # fmt: skip
    except ValueError as e:
        raise ClassifyError(str(e)) from None
    clf = Classifier(method, table.embeddings, table.labels, thr, dist, src, model.source,
                     asdict(model.pre), strangers)  # fmt: skip
    return Trained(clf, figures, notes)


def check_model(clf: Classifier, model, source: str) -> None:
    """A classifier works only with the model (and preprocessing) it was trained with."""
    from dataclasses import asdict

    from facetrain.inference.record import EMBEDDING_FIELDS

    mine = {k: asdict(model.pre)[k] for k in EMBEDDING_FIELDS}
    theirs = {k: clf.preprocess.get(k) for k in EMBEDDING_FIELDS}
    if mine != theirs:
        raise ClassifyError(
            f"{source} was made with another model or preprocessing ({theirs}), not {mine}"
        )
