"""The library's stacks with no names on small libraries: a family's first few people.

`bench/library_populations.py` measures whole sets (15 to 300 people, up to 25 photos
each), where the library's own spacing has enough faces to go by. A new owner's library is
often a few people with a few photos each. This script draws such libraries from each set
(the same faces, scanned the library's way and cached by `library_populations`):
`k` people × `m` photos, optionally one person with `dom` photos beside them (a child in
most photos), and optionally a share of faces put two by two into one photo with another
person (group photos: two faces of one photo are two people). Per kind of library it prints
the oracle's F (the best single threshold, chosen with the truth, per library), the F of
the library's own clustering with no names, and their ratio, averaged over `--draws`
libraries. Then `library identify` on small libraries (k people × 8 photos, n of them
named on half their faces; the other halves, and every other person's, held back as new
photos; `library_populations.identify_rates`): the named people's new faces given their
name, and the others' given any name (mean and worst of 24 draws), with the unnamed stacks
as rivals of a name and without, in the same run.

With `--owner`, the owner's rounds instead (`library_populations.owner_rounds`: name the
largest unnamed stack after its majority, fix the worst named stack, cluster again; as
many rounds as people, at most 5) on 8 small libraries of each kind: the mean F after
each round and the worst change from one round to the next (names only help: ≥ −0.005).

    .venv/bin/python bench/small_libraries.py [--sets NAME ...] [--draws 12] [--no-identify]
    .venv/bin/python bench/small_libraries.py --owner [--sets NAME ...]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np

from library_populations import (
    SETS,
    bcubed_f,
    identify_rates_both,
    oracle,
    owner_rounds,
    stacks_with_no_names,
    with_mixed,
)

# (people, photos each, one more person with this many photos (0: none), share of faces
# in two-face group photos)
KINDS = [(3, 4, 0, 0.0), (4, 4, 0, 0.0), (5, 6, 0, 0.0), (8, 8, 0, 0.0), (4, 4, 0, 0.3),
         (8, 8, 0, 0.3), (3, 4, 16, 0.0), (1, 2, 20, 0.0), (0, 1, 20, 0.0)]  # fmt: skip


def draw(s: dict, rng, k: int, m: int, dom: int, grouped: float) -> dict | None:
    """One small library from set `s` (None when the set lacks such people)."""
    count = {t: int((s["truth"] == t).sum()) for t in np.unique(s["truth"]) if t}
    people = [t for t, c in count.items() if c >= m]
    big = [t for t, c in count.items() if c >= dom] if dom else []
    if len(people) < k + bool(dom) or (dom and not big):
        return None
    parts, pool = [], people
    if dom:
        b = rng.choice(big)
        parts.append(rng.choice(np.flatnonzero(s["truth"] == b), dom, replace=False))
        pool = [p for p in people if p != b]
    for who in rng.choice(pool, k, replace=False):
        parts.append(rng.choice(np.flatnonzero(s["truth"] == who), m, replace=False))
    idx = np.concatenate(parts)
    truth = s["truth"][idx]
    return {"emb": s["emb"][idx], "photo": _group_photos(truth, rng, grouped), "truth": truth}


def _group_photos(truth: np.ndarray, rng, share: float) -> np.ndarray:
    """A photo id a face, with `share` of the faces two by two in one photo with a face of
    another person."""
    photo = np.arange(len(truth))
    free = list(rng.permutation(len(truth)))
    for _ in range(int(share * len(truth) / 2)):
        a = free.pop(0)
        b = next((x for x in free if truth[x] != truth[a]), None)
        if b is None:
            break
        free.remove(b)
        photo[b] = photo[a]
    return photo


IDENTIFY = [(6, 8, 2), (8, 8, 3), (10, 8, 5)]  # people × photos, named


def identify_table(sets: dict, pre, draws: int = 24) -> None:
    """Named right and strangers named, with the unnamed stacks as rivals of a name
    (`library/rivals.py`, now) and without (before), on the whole set (2 and 5 named,
    4 draws of the held-back half) and on small libraries drawn from it."""
    from dataclasses import asdict

    print(f"{'set':<20}{'library':<18}| before: named right, strangers named (worst) "
          f"| now: named right, strangers named (worst)")  # fmt: skip
    for name, s in sets.items():
        rng = np.random.default_rng(3)
        rows = [(f"whole, {n} named", [(s, n, seed) for seed in range(4)]) for n in (2, 5)]
        for k, m, named in IDENTIFY:
            libs = [draw(s, rng, k, m, 0, 0.0) for _ in range(draws)]
            if all(lib is not None for lib in libs):
                rows.append((f"{k}×{m}, {named} named",
                             [(lib, named, i) for i, lib in enumerate(libs)]))  # fmt: skip
        for kind, runs in rows:
            both = [identify_rates_both(lib, asdict(pre), n, seed) for lib, n, seed in runs]
            cells = []
            for rivals in (False, True):
                rates = np.array([b[rivals] for b in both])
                right, strangers = rates.mean(0)
                cells.append(f"{right:>7.1%} {strangers:>6.1%} ({rates[:, 1].max():.1%})")
            print(f"{name:<20}{kind:<18}| {cells[0]:<44}| {cells[1]}", flush=True)


OWNER = [(4, 4, 0, 0.0), (5, 6, 0, 0.0), (8, 8, 0, 0.0), (3, 4, 16, 0.0), (8, 8, 0, 0.3)]


def owner_table(sets: dict, pre, draws: int = 8) -> None:
    """The owner's rounds on small libraries of each set: mean F after each, worst step."""
    from dataclasses import asdict

    print(f"{'set':<20}{'library':<22}| F with no names, then after each round (mean) | "
          f"worst step")  # fmt: skip
    for name, s in sets.items():
        rng = np.random.default_rng(7)
        for k, m, dom, grouped in OWNER:
            libs = [draw(s, rng, k, m, dom, grouped) for _ in range(draws)]
            if any(lib is None for lib in libs):
                continue
            f = np.array([owner_rounds(lib, asdict(pre), rounds=min(5, k)) for lib in libs])
            kind = f"{k}×{m}" + (f" + 1×{dom}" if dom else "") + (
                f", {grouped:.0%} grouped" if grouped else "")  # fmt: skip
            print(f"{name:<20}{kind:<22}| {' '.join(f'{x:.3f}' for x in f.mean(0)):<46}| "
                  f"{np.diff(f, axis=1).min():+.3f}", flush=True)  # fmt: skip


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--no-identify", action="store_true", help="the stacks only")
    ap.add_argument("--owner", action="store_true", help="the owner's naming rounds instead")
    args = ap.parse_args(argv)
    pre = open_for_use("pretrained:dlib_resnet").pre
    if args.owner:
        owner_table(with_mixed(args.sets), pre)
        return 0
    grid = np.round(np.arange(0.04, 0.40, 0.01), 3)
    print(f"{platform.node()}: small libraries, {args.draws} draws a kind; no names; "
          f"calibrated threshold {pre.threshold:.3f}")  # fmt: skip
    print(f"{'set':<20}{'library':<22}{'oracle F':>9}{'no names F':>11}{'/ oracle':>9}")
    sets = with_mixed(args.sets)
    for name, s in sets.items():
        rng = np.random.default_rng(1)
        for k, m, dom, grouped in KINDS:
            libs = [draw(s, rng, k, m, dom, grouped) for _ in range(args.draws)]
            if any(lib is None for lib in libs):
                continue
            best = np.mean([oracle(lib, pre.distance, grid)[0] for lib in libs])
            ours = np.mean([bcubed_f(stacks_with_no_names(lib, pre.threshold, pre.distance),
                                     lib["truth"]) for lib in libs])  # fmt: skip
            kind = f"{k}×{m}" + (f" + 1×{dom}" if dom else "") + (
                f", {grouped:.0%} grouped" if grouped else "")  # fmt: skip
            print(f"{name:<20}{kind:<22}{best:>9.3f}{ours:>11.3f}{ours / best:>9.2f}", flush=True)
    if not args.no_identify:
        identify_table(sets, pre)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
