"""How far "same person?" should look: the page suggests, for a stack, the stacks nearest
it on average (`Library.suggestions`). Per set (the faces `bench/library_populations.py`
scanned and cached), its stacks with no names, as `library cluster` makes them; for each
stack its 5 nearest other stacks (none sharing a photo with it), each either a true merge
(the two stacks' majority person is the same) or not. Printed: how far the true merges
lie, in units of the threshold (the farthest, and how many past 1.5 and 2), and how many
of the wrong suggestions lie past 1.5 and 2 thresholds — a ceiling under which every
true merge lies removes only noise. Then the same on small libraries drawn from each set
(`small_libraries.draw`: 4 people × 4 photos and 8 × 8, 12 draws of each, all their
suggestions together).

    .venv/bin/python bench/suggestions.py [--sets NAME ...] [--no-small]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np

from library_populations import SETS, stacks_with_no_names, with_mixed
from small_libraries import draw

SMALL = [(4, 4), (8, 8)]  # people × photos


def suggested(s: dict, labels: np.ndarray, threshold: float, distance: str, k: int = 5):
    """(true merges' distances, wrong suggestions' distances), in thresholds."""
    from facetrain.distances import mean_distances

    truth = s["truth"]
    major = {}
    for stack in np.unique(labels):
        known = truth[(labels == stack) & (truth != "")]
        names, counts = np.unique(known, return_counts=True)
        major[stack] = names[counts.argmax()] if len(names) else None
    right, wrong = [], []
    for stack in np.unique(labels):
        mine = labels == stack
        d = mean_distances(s["emb"][mine], s["emb"], distance)
        mean = np.bincount(labels, weights=d) / np.bincount(labels)
        clash = set(labels[np.isin(s["photo"], s["photo"][mine])].tolist())
        near = [j for j in np.argsort(mean, kind="stable") if j not in clash][:k]
        for j in near:
            same = major[stack] is not None and major[stack] == major[j]
            (right if same else wrong).append(mean[j] / threshold)
    return np.array(right), np.array(wrong)


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--no-small", dest="small", action="store_false",
                    help="whole sets only")  # fmt: skip
    args = ap.parse_args(argv)
    pre = open_for_use("pretrained:dlib_resnet").pre
    print(f"{platform.node()}: 5 suggestions a stack, no names; threshold {pre.threshold:.3f}")
    print(f"{'set':<24}{'stacks':>7}{'true':>7}{'farthest':>9}{'> 1.5 / 2':>11}"
          f"{'wrong':>7}{'> 1.5 thr':>10}{'> 2 thr':>8}")  # fmt: skip
    sets = with_mixed(args.sets)
    for name, s in sets.items():
        _row(name, [s], pre)
    if args.small:
        for name, s in sets.items():
            rng = np.random.default_rng(5)
            for k, m in SMALL:
                libs = [draw(s, rng, k, m, 0, 0.0) for _ in range(12)]
                if all(lib is not None for lib in libs):
                    _row(f"{name} {k}×{m}", libs, pre)
    return 0


def _row(name: str, libraries: list[dict], pre) -> None:
    """One line of the table: the suggestions of every stack of these libraries."""
    stacks, right, wrong = 0, [], []
    for s in libraries:
        labels = stacks_with_no_names(s, pre.threshold, pre.distance)
        r, w = suggested(s, labels, pre.threshold, pre.distance)
        stacks, right, wrong = stacks + len(np.unique(labels)), [*right, *r], [*wrong, *w]
    right, wrong = np.array(right), np.array(wrong)
    far = f"{right.max():.2f}" if len(right) else "-"
    past = int((right > 1.5).sum()), int((right > 2).sum())
    share = (lambda c: f"{(wrong > c).mean():.0%}") if len(wrong) else (lambda c: "-")
    print(f"{name:<24}{stacks:>7}{len(right):>7}{far:>9}{f'{past[0]} / {past[1]}':>11}"
          f"{len(wrong):>7}{share(1.5):>10}{share(2):>8}", flush=True)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
