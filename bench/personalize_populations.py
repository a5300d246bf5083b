"""`library personalize` on every population, and on a library mixing them.

`bench/personalize.py` measured the owner's adapter on LFW-like sets only (a mini-train
family, bbt, friends). An adapter is a decision the library makes for the owner: once on,
it decides every stack, every name and every "unknown". Here it is measured as the owner
meets it, on each set of `bench/library_populations.py` (faces scanned the library's way,
cached there) and on small libraries drawn from them (`small_libraries.draw`):

- each person's faces split: 60% in the library, 40% held back as new photos;
- `named` people (drawn among those with 8 or more faces) named and confirmed on all their
  library faces, the library clustered: the owner's library;
- before: `library identify` (`Library.namer`, rivals and all) on the held-back faces —
  named people's faces given their name, everyone else's given any name — and BCubed F of
  the library's stacks over its faces of known people;
- `Library.personalize()`, the command's own path (its hold-out report and verdict, the
  adapter switched on, the library clustered again), then the same figures after.

    .venv/bin/python bench/personalize_populations.py [--sets NAME ...] [--draws 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name
from library_populations import SETS, bcubed_f, library_of, name_faces, stack_of, with_mixed
from small_libraries import draw

HELD = 0.4  # share of each person's faces held back as new photos
# (people, photos each, named); 0 people: the whole set
KINDS = [(0, 0, 5), (6, 10, 3), (10, 10, 5)]


def owner_library(s: dict, rng, named: int):
    """(the library's faces, the held-back faces, the named people), or None when the set
    has fewer than `named` people with 8 faces."""
    people, counts = np.unique(s["truth"][s["truth"] != ""], return_counts=True)
    eligible = people[counts >= 8]
    if len(eligible) < named:
        return None
    chosen = rng.choice(eligible, named, replace=False).tolist()
    held = np.zeros(len(s["truth"]), bool)
    for p in people:
        idx = rng.permutation(np.flatnonzero(s["truth"] == p))
        held[idx[: int(HELD * len(idx))]] = True
    return {k: v[~held] for k, v in s.items()}, {k: v[held] for k, v in s.items()}, chosen


def figures(lib, face_id, sub: dict, query: dict, chosen: list[str]) -> tuple:
    """(named right, strangers named, stacks F) of the library as it is now."""
    namer = lib.namer()
    got = np.array([namer.name(e[None])[0]["name"] for e in query["emb"]])
    want = np.array([t.replace("/", "-") for t in query["truth"]])
    mine = np.isin(query["truth"], chosen)
    right = float(np.mean(got[mine] == want[mine]))
    strangers = float(np.mean(got[~mine] != "unknown")) if (~mine).any() else 0.0
    return right, strangers, bcubed_f(stack_of(lib, face_id), sub["truth"])


def run(s: dict, pre: dict, named: int, seed: int) -> dict | None:
    """Before and after `personalize` in one owner's library drawn from set `s`."""
    split = owner_library(s, np.random.default_rng(seed), named)
    if split is None:
        return None
    sub, query, chosen = split
    with tempfile.TemporaryDirectory() as tmp:
        lib, face_id = library_of(sub, Path(tmp), pre)
        with lib:
            name_faces(lib, {p: face_id[sub["truth"] == p] for p in chosen})
            lib.cluster()
            before = figures(lib, face_id, sub, query, chosen)
            t0 = time.perf_counter()
            report = lib.personalize(anyway=True)  # on, to measure it: the gate decides below
            seconds = time.perf_counter() - t0
            on = figures(lib, face_id, sub, query, chosen)
    held = {k: v for k, v in report.items() if k.endswith(("_before", "_after"))}
    return {"before": before, "on": on, "after": on if report["helps"] else before,
            "verdict": report["verdict"], "helps": report["helps"], "report": held,
            "seconds": seconds}  # fmt: skip


def libraries(s: dict, kind: tuple, draws: int, rng) -> list[dict]:
    """The sets to draw owners' libraries from: the whole set (`draws` // 2, at least 2, of
    its owners), or `draws` small libraries."""
    k, m, _ = kind
    if k == 0:
        return [s] * max(2, draws // 2)
    out = [draw(s, rng, k, m, 0, 0.0) for _ in range(draws)]
    return [] if any(x is None for x in out) else out


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--json", type=Path, help="every draw's figures, to this file")
    args = ap.parse_args(argv)
    pre = asdict(open_for_use("pretrained:dlib_resnet").pre)
    sets = with_mixed(args.sets)
    print(f"# {cpu_name()}; named right / strangers named / "
          "stacks F, mean (worst draw): before | the adapter on | as the library decides "
          "(on where its own hold-out says it helps) | draws it switched on")  # fmt: skip
    every = {}
    for name, s in sets.items():
        rng = np.random.default_rng(11)
        for kind in KINDS:
            k, m, named = kind
            named = named * 2 if name == "mixed" and k == 0 else named
            rows = [run(lib, pre, named, seed)
                    for seed, lib in enumerate(libraries(s, kind, args.draws, rng))]  # fmt: skip
            rows = [r for r in rows if r is not None]
            if not rows:
                continue
            every[f"{name} {k}x{m}"] = rows
            print(_line(name, f"{k}×{m}" if k else "whole", named, rows), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(every, indent=1) + "\n")
    return 0


def _line(name: str, kind: str, named: int, rows: list[dict]) -> str:
    """before | the adapter on | as the library decides | draws switched on | seconds."""
    cells = []
    for when in ("before", "on", "after"):
        x = np.array([r[when] for r in rows])
        right, strangers, f = x.mean(0)
        cells.append(f"{right:.1%} ({x[:, 0].min():.1%}) / {strangers:.1%} "
                     f"({x[:, 1].max():.1%}) / {f:.3f} ({x[:, 2].min():.3f})")  # fmt: skip
    on = sum(r["helps"] for r in rows)
    secs = np.mean([r["seconds"] for r in rows])
    return (f"| {name} | {kind}, {named} named | {' | '.join(cells)} | {on} of {len(rows)} | "
            f"{secs:.1f} s |")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
