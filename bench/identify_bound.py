"""Issue 28 (4): what any threshold could do for `library identify` on each set.

The same hold-out as bench/library_populations.py's identify columns (the 2 or 5 people
with the most faces named on half their faces; the other half and half of everyone else's
faces as new photos). Each new face is scored against each named person — nearest face or
mean over the person's faces, in distance or in units of each pair's spacing limit (the
library's rule) — and the threshold is chosen WITH the truth: the most named people found
while strangers are named at most 5%. Then the runner-up margins of the rule in limit
units, at limit 1. A set where even the chosen threshold stays under 90% is blocked by the
model, not by the rule.

    .venv/bin/python bench/identify_bound.py [--sets NAME ...]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from library_populations import SETS, with_mixed

T, D = 0.19, "squared_l2"  # the default model's calibrated threshold and distance


def split(s: dict, named: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = s["truth"]
    people, counts = np.unique(truth[truth != ""], return_counts=True)
    chosen = [p for c, p in sorted(zip(-counts, people)) if -c >= 4][:named]
    query = np.zeros(len(truth), bool)
    for p in people:
        idx = rng.permutation(np.flatnonzero(truth == p))
        query[idx[: len(idx) // 2]] = True
    return chosen, query


def scores(s: dict, chosen: list, query: np.ndarray) -> dict:
    """Per score name: (faces x named people) matrix."""
    from facetrain.distances import distance_matrix
    from facetrain.library.cluster import local_scales, pair_limits

    keep = ~query
    le, lt, lph = s["emb"][keep], s["truth"][keep], s["photo"][keep]
    q = s["emb"][query]
    lscale = local_scales(le, lph, D)
    qscale = np.array([local_scales(np.concatenate([q[i : i + 1], le]),
                                    np.concatenate([[-1], lph]), D, rows=1)[0]
                       for i in range(len(q))])  # fmt: skip
    d = distance_matrix(q, le, D)
    u = d / pair_limits(qscale, lscale, T)
    out = {}
    kinds = (("nearest", d, np.min), ("mean", d, np.mean),
             ("nearest, limit units", u, np.min), ("mean, limit units", u, np.mean))  # fmt: skip
    for name, m, reduce in kinds:
        out[name] = np.stack([reduce(m[:, lt == p], axis=1) for p in chosen], 1)
    return out


def best_at(per: np.ndarray, right: np.ndarray, mine: np.ndarray, budget: float = 0.05):
    v = per.min(1)
    best = (0.0, None)
    for t in np.unique(v):
        if np.mean(v[~mine] <= t) <= budget:
            best = max(best, (float(np.mean(right[mine] & (v[mine] <= t))), float(t)),
                       key=lambda x: x[0])  # fmt: skip
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    args = ap.parse_args(argv)
    sets = with_mixed(args.sets)
    for name, s in sets.items():
        for named in (2, 5):
            chosen, query = split(s, named)
            want = s["truth"][query]
            mine = np.isin(want, chosen)
            cells = []
            for how, per in scores(s, chosen, query).items():
                right = np.array(chosen)[per.argmin(1)] == want
                r, t = best_at(per, right, mine)
                cells.append(f"{how} {r:.1%}" + (f" @{t:.3f}" if t is not None else ""))
                if how == "mean, limit units":
                    srt = np.sort(per, 1)
                    gap = srt[:, 1] - srt[:, 0] if per.shape[1] > 1 else np.full(len(per), 9.0)
                    for m in (0.26, 0.15, 0.10):
                        ok = (srt[:, 0] < 1) & (gap >= m)
                        cells.append(f"margin {m}: {np.mean(right[mine] & ok[mine]):.1%} / "
                                     f"{np.mean(ok[~mine]):.1%}")  # fmt: skip
            print(f"{name:<20} {named} named | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
