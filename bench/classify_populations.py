"""`classify predict` on every population: known people's new faces named right, and
strangers named (a name given to someone the classifier was never shown).

On each set of bench/library_populations.py (its cached faces, the default model) and the
library mixing them: the 2 (or 5) people with the most faces are known from half their
faces (an SVM, `classify train`'s default); the other half are their new faces, and every
other person's faces are strangers. Three rules: "one threshold" (how `classify predict`
named before: the SVM's choice when under the model's threshold of that person's nearest
known face), "rule" (now: the SVM's choice when the open-set rule of `library identify`
names it too, `open_set.identify`), and "rule + strangers" (the classifier also shown
half of the strangers at training, `classify train --unknown`, measured on the others).

    .venv/bin/python bench/classify_populations.py [--sets NAME ...]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from facetrain.devices import cpu_name
from library_populations import SETS, with_mixed

THRESHOLD, DISTANCE = 0.19, "squared_l2"  # the default model's


def one_threshold(c, emb: np.ndarray) -> list[str]:
    """The way `classify predict` named before: the method's choice under the threshold
    of that person's nearest known face."""
    from facetrain.distances import distance_matrix

    guess, d = c._est.predict(emb), distance_matrix(emb, c.embeddings, DISTANCE)
    labels = np.asarray(c.labels)
    return [str(g) if d[k, labels == g].min() < THRESHOLD else "unknown"
            for k, g in enumerate(guess)]  # fmt: skip


def names(c, emb: np.ndarray, rule: str) -> list[str]:
    return one_threshold(c, emb) if rule == "one threshold" else [r["name"] for r in c.predict(emb)]


def rates(s: dict, known_n: int) -> dict[str, tuple[float, float]]:
    from facetrain.use.classify import Classifier

    keep = s["truth"] != ""
    e, t = s["emb"][keep], s["truth"][keep]
    people, counts = np.unique(t, return_counts=True)
    known = [p for _, p in sorted(zip(-counts, people))][:known_n]
    rng = np.random.default_rng(0)
    g, q = [], []
    for p in known:
        idx = rng.permutation(np.flatnonzero(t == p))
        g, q = g + idx[: len(idx) // 2].tolist(), q + idx[len(idx) // 2 :].tolist()
    strangers = rng.permutation(np.flatnonzero(~np.isin(t, known)))
    shown, tested = strangers[::2], strangers[1::2]
    out = {}
    for rule, context in (("one threshold", None), ("rule", None), ("rule + strangers", shown)):
        c = Classifier("svm", e[g], t[g].tolist(), THRESHOLD, DISTANCE, "",
                       context=None if context is None else e[context]).fit()  # fmt: skip
        right = np.mean(np.array(names(c, e[q], rule)) == t[q])
        named = np.mean(np.array(names(c, e[tested], rule)) != "unknown")
        out[rule] = (float(right), float(named))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    args = ap.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores; pretrained:dlib_resnet, SVM")
    sets = with_mixed(args.sets)
    print("| set | known | one threshold: right / strangers named | rule | rule + strangers |")
    print("|---|---|---|---|---|")
    for name, s in sets.items():
        for n in (2, 5):
            r = rates(s, n)
            print(f"| {name} | {n} | "
                  + " | ".join(f"{a:.1%} / {b:.1%}" for a, b in r.values()) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
