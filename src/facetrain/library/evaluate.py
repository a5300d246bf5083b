"""How good are the stacks? Pairwise and BCubed precision / recall / F against folder labels.

Truth is a folder per person whose photos show that person. A truth photo is matched to
the library by content (SHA-256), so the truth folders may be copies. Only photos with
exactly one usable face can say which face is the person; the others are counted and
left out. A face in no stack counts as a stack of its own.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from facetrain.data.listing import list_photos
from facetrain.library import store
from facetrain.library.scan import sha256


def scores(pred: list, truth: list) -> dict:
    """Pairwise and BCubed precision, recall and F1 of a clustering against labels."""
    pred_a, truth_a = np.asarray(pred), np.asarray(truth)
    n = len(pred_a)
    if n == 0:
        raise ValueError("no labelled faces to evaluate")
    pairs = Counter(zip(pred_a.tolist(), truth_a.tolist()))
    by_pred, by_truth = Counter(pred_a.tolist()), Counter(truth_a.tolist())

    def c2(k: int) -> int:
        return k * (k - 1) // 2

    tp = sum(c2(k) for k in pairs.values())
    pp, tt = sum(c2(k) for k in by_pred.values()), sum(c2(k) for k in by_truth.values())
    p_prec = tp / pp if pp else 1.0
    p_rec = tp / tt if tt else 1.0
    b_prec = float(
        np.mean([pairs[(p, t)] / by_pred[p] for p, t in zip(pred_a.tolist(), truth_a.tolist())])
    )
    b_rec = float(
        np.mean([pairs[(p, t)] / by_truth[t] for p, t in zip(pred_a.tolist(), truth_a.tolist())])
    )

    def f(a: float, b: float) -> float:
        return 2 * a * b / (a + b) if a + b else 0.0

    return {
        "pairwise_precision": p_prec,
        "pairwise_recall": p_rec,
        "pairwise_f": f(p_prec, p_rec),
        "bcubed_precision": b_prec,
        "bcubed_recall": b_rec,
        "bcubed_f": f(b_prec, b_rec),
        "faces": n,
        "people": len(by_truth),
        "stacks": len(by_pred),
    }


def truth_labels(con, truth_dir: str | os.PathLike) -> tuple[list, list, dict]:
    """(stack per face, person per face, counts of what was left out)."""
    by_hash: dict[str, str] = {}
    left = Counter()
    for person in sorted(os.listdir(truth_dir)):
        folder = os.path.join(truth_dir, person)
        if os.path.isdir(folder) and not person.startswith("."):
            for p in list_photos(folder):
                if not os.path.isfile(p):  # a FIFO would block the read; a dangling link
                    left["not a regular file"] += 1
                    continue
                try:
                    by_hash[sha256(p)] = person
                except OSError:
                    left["unreadable"] += 1
    pred, truth = [], []
    for digest, person in sorted(by_hash.items()):
        photo = store.original_with_hash(con, digest)
        if photo is None:
            left["not in the library"] += 1
            continue
        faces = store.faces_of_photo(con, photo, usable_only=True)
        if len(faces) != 1:
            left[f"{'no' if not faces else 'several'} usable faces"] += 1
            continue
        fid, pid = faces[0]["id"], faces[0]["person_id"]
        pred.append(f"stack{pid}" if pid is not None else f"alone{fid}")
        truth.append(person)
    return pred, truth, dict(left)
