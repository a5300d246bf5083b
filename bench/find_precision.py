"""`find` in a folder, on every population: of the photos it returns for a face, how many
show that person (precision), and how many of that person's photos it returns (recall)?

Each face of a set (bench/library_populations.py's cached faces: photos of one usable
face, the default model) is looked for among all the set's faces — the folder holding
the query's own photo, as `facetrain.find("me.jpg", "photos/")` is used — its own photo
left out of the counts. Two rules decide a hit: one threshold (the model's calibrated
one, as `find` did) and the spacing rule (`use.api.within_limits`, as `find` does now:
each pair's limit tightened by the folder's own spacing, as the library's stacks are).

    .venv/bin/python bench/find_precision.py [--sets NAME ...]

Prints per set and rule: precision, recall, F1, and the share of queries with at least
one photo of someone else among their hits; last, each set's precision ratio, spacing /
threshold.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from library_populations import MODEL, SETS, with_mixed


def scores(hit: np.ndarray, truth: np.ndarray) -> dict:
    """Precision, recall, F1 and queries with a wrong hit, the diagonal (each query's own
    photo) left out."""
    same = truth[:, None] == truth[None, :]
    np.fill_diagonal(hit, False)
    np.fill_diagonal(same, False)
    tp, fp = (hit & same).sum(), (hit & ~same).sum()
    p, r = tp / max(tp + fp, 1), tp / max(same.sum(), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12),
            "wrong_queries": (hit & ~same).any(1).mean()}  # fmt: skip


def main() -> None:
    from facetrain.inference.compiled import open_for_use
    from facetrain.use.api import within_limits

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    args = ap.parse_args()
    pre = open_for_use(MODEL).pre
    thr, dist = pre.threshold, pre.distance
    print(f"{platform.machine()}, {os.cpu_count()} cores; {MODEL}, threshold {thr:.3f} {dist}")
    sets = with_mixed(args.sets)
    print("| set | faces | rule | precision | recall | F1 | queries with a wrong hit |")
    print("|---|---|---|---|---|---|---|")
    ratios = {}
    for name, s in sets.items():
        keep = s["truth"] != ""
        e, truth = s["emb"][keep], s["truth"][keep]
        d, spaced = within_limits(e, e, thr, dist)
        rows = {"one threshold": scores(d < thr, truth), "spacing": scores(spaced, truth)}
        for rule, r in rows.items():
            print(f"| {name} | {len(e)} | {rule} | {r['precision']:.3f} | {r['recall']:.3f} | "
                  f"{r['f1']:.3f} | {r['wrong_queries']:.1%} |")  # fmt: skip
        ratios[name] = rows["spacing"]["precision"] / max(rows["one threshold"]["precision"], 1e-12)
    print("precision ratio, spacing / one threshold: "
          + ", ".join(f"{n} {x:.2f}x" for n, x in ratios.items()))  # fmt: skip


if __name__ == "__main__":
    main()
