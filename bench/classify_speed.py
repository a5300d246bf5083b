"""`classify predict` on a large gallery: naming each face among the known people.

Each face's distance to a person is the mean, in units of each pair's limit, over that
person's known faces (`open_set.identify`). Before, every face was named on its own: its
distance row computed alone, then one boolean mask over the whole gallery per person —
faces x people x gallery work, 18 s for 1,000 faces among 1,000 people. Now a block of
faces at a time: one distance block, and one grouped sum over the gallery sorted by person
(`open_set._to_people`). Both, same faces, same run, same answers required:

    .venv/bin/python bench/classify_speed.py [--faces 10000] [--queries 1000] [--photos 20]

`classify predict` names a photo at a time. Each photo measured the known faces' spacing
among all the faces seen again (`open_set.Among.of`); the classifier now measures it once
(`Classifier.among`). Both on `--photos` photos of three faces, same answers required.

Synthetic faces as bench/library_scale.py makes them (128-d, identities in families of
look-alikes); the queries are half faces of the known people, half strangers'.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from facetrain.devices import cpu_name
from library_scale import synthetic


def before(emb, protos, threshold, distance, margin, limits):
    """The rule as it was computed before, one face at a time (for the same-run baseline)."""
    from facetrain.distances import distance_matrix

    pemb, pid, names = protos
    people = np.unique(pid)
    out = []
    for k in range(len(emb)):
        d = distance_matrix(emb[k : k + 1], pemb, distance) / np.maximum(limits[k : k + 1], 1e-12)
        row = np.stack([np.mean(d[:, pid == p], axis=1) for p in people], 1)[0]
        order = np.argsort(row)
        best, second = row[order[0]], (row[order[1]] if len(row) > 1 else None)
        ok = best < 1.0 and (second is None or second - best >= margin / threshold)
        out.append(names[int(people[order[0]])] if ok else "unknown")
    return out


def photo_at_a_time(emb, label, gallery, ask, photos: int) -> tuple[float, float]:
    """Seconds to name `photos` photos of three faces each: the known faces' spacing
    measured for every photo (before), and once (now)."""
    from facetrain.use.classify import Classifier

    clf = Classifier("centroid", emb[gallery], [f"p{x}" for x in label[gallery]], 1.0,
                     "squared_l2", "given").fit()  # fmt: skip
    groups = [ask[3 * k : 3 * k + 3] for k in range(photos)]
    t = time.perf_counter()
    before = []
    for g in groups:
        clf._among = None  # measured again, as each photo did
        before.append(clf.predict(emb[g], one_photo=True))
    t_before = time.perf_counter() - t
    clf._among = None  # measured once, for the first photo
    t = time.perf_counter()
    now = [clf.predict(emb[g], one_photo=True) for g in groups]
    t_now = time.perf_counter() - t
    assert now == before, "the answers changed"
    return t_before, t_now


def main() -> None:
    from facetrain.open_set import MARGIN, Among, identify_each

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=10_000, help="known faces (the gallery)")
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--photos", type=int, default=20, help="photos named a photo at a time")
    args = ap.parse_args()
    emb, label, _ = synthetic(args.faces * 3 + args.queries * 4)
    people = np.unique(label)
    rng = np.random.default_rng(1)
    strangers = rng.permutation(people)[: len(people) // 5]
    known = ~np.isin(label, strangers)
    gallery = np.flatnonzero(known)[::2][: args.faces]  # the other half of each: queries
    left = np.setdiff1d(np.arange(len(emb)), gallery)
    ask = np.concatenate([rng.choice(left[known[left]], args.queries // 2, replace=False),
                          rng.choice(left[~known[left]], args.queries - args.queries // 2,
                                     replace=False)])  # fmt: skip
    pid = label[gallery]
    protos = (emb[gallery], pid, {int(p): f"p{p}" for p in np.unique(pid)})
    threshold = 1.0  # squared L2 between the families' spacing and the people's own
    limits = Among.of(emb[gallery], np.zeros((0, 128)), threshold, "squared_l2").limits(emb[ask])
    t = time.perf_counter()
    old = before(emb[ask], protos, threshold, "squared_l2", MARGIN, limits)
    t_before = time.perf_counter() - t
    t = time.perf_counter()
    new = [r["name"] for r in identify_each(emb[ask], protos, threshold, "squared_l2",
                                            MARGIN, limits)]  # fmt: skip
    t_now = time.perf_counter() - t
    assert new == old, "the answers changed"
    right = sum(n == f"p{label[a]}" for n, a in zip(new, ask))
    print(f"{cpu_name()}, {os.cpu_count()} cores")
    print(f"{len(gallery)} known faces of {len(protos[2])} people, {len(ask)} faces asked "
          f"(half strangers'): {right} named right, {new.count('unknown')} unknown, "
          "same answers both ways")  # fmt: skip
    print(f"before (a face at a time, a mask per person): {t_before:.2f} s")
    print(f"now (a block of faces, one grouped sum):      {t_now:.2f} s ({t_before / t_now:.1f}x)")
    t_before, t_now = photo_at_a_time(emb, label, gallery, ask, args.photos)
    print(f"{args.photos} photos of 3 faces, a photo at a time, same answers both ways:")
    print(
        f"before (the known faces' spacing each photo): {t_before:.2f} s "
        f"({t_before / args.photos:.3f} s a photo)"
    )
    print(
        f"now (measured once):                          {t_now:.2f} s "
        f"({t_now / args.photos:.3f} s a photo, {t_before / t_now:.1f}x)"
    )


if __name__ == "__main__":
    main()
