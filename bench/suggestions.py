"""How far "same person?" should look: the page suggests, for a stack, the stacks nearest
it on average (`Library.suggestions`). Per set (the faces `bench/library_populations.py`
scanned and cached), its stacks with no names, as `library cluster` makes them; for each
stack its 5 nearest other stacks (none sharing a photo with it), each either a true merge
(the two stacks' majority person is the same) or not. Printed: how far the true merges
lie, in units of the threshold, and how many of the wrong suggestions lie past 1.5 and 2
thresholds — a ceiling under which every true merge lies removes only noise.

    .venv/bin/python bench/suggestions.py [--sets NAME ...]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np

from library_populations import SETS, stacks_with_no_names, with_mixed


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
    args = ap.parse_args(argv)
    pre = open_for_use("pretrained:dlib_resnet").pre
    print(f"{platform.node()}: 5 suggestions a stack, no names; threshold {pre.threshold:.3f}")
    print(f"{'set':<20}{'stacks':>7}{'true merges':>12}{'farthest':>9}"
          f"{'wrong':>7}{'> 1.5 thr':>10}{'> 2 thr':>8}")  # fmt: skip
    for name, s in with_mixed(args.sets).items():
        labels = stacks_with_no_names(s, pre.threshold, pre.distance)
        right, wrong = suggested(s, labels, pre.threshold, pre.distance)
        far = f"{right.max():.2f}" if len(right) else "-"
        print(f"{name:<20}{len(np.unique(labels)):>7}{len(right):>12}{far:>9}{len(wrong):>7}"
              f"{(wrong > 1.5).mean():>10.0%}{(wrong > 2).mean():>8.0%}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
