"""Google Photos' names on group photos: does `--import-takeout` name the right faces, and
no stranger, in every population?

Google Takeout lists the people named on a photo, not where they are. A photo of one
person with one face names it; on a photo of several faces, each face is named one of the
people listed when `library identify`'s rule (`Library.namer`), its candidates only those
listed people, is sure of it (`imports.named_among`), in rounds: the faces one round
names join the named people's faces for the next (`imports.by_likeness`). People listed
with no face to compare with — never alone on a photo — are named on the stack the
photos that list them share (`imports.by_company`). "likeness" rows are the rounds alone,
"lists" rows the whole import (`imports.name_listed`). Measured per set of
bench/library_populations.py (its cached faces) and on one library mixing them:

    .venv/bin/python bench/takeout_groups.py [--sets NAME ...] [--named 10]
        [--unseen 0 3] [--groups 300] [--seeds 6] [--companion]

The `named` people with the most faces (4 or more) are named on two faces each (their
photos of one person), the next `unseen` on none; the rest of their faces are put into
group photos of 2-4 of them, each listing its people — with, in a third of the photos, a
stranger's face too (someone not listed), and in a fifth, one listed person's face missing
(the detector did not find it: the list then names someone absent). Every other face stays
in the library, unnamed. `--companion`: someone no list names is beside the first of the
`unseen` people (`groups_of`). Counts are summed over `seeds` draws of the group photos.
"right": a listed person's face given their name; "left": given none; "wrong": a face given
a name not its own (strangers counted here).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name
from facetrain.library.imports import ROUNDS, by_likeness, name_listed
from library_populations import MODEL, SETS, library_of, name_faces, with_mixed


def groups_of(s: dict, named: int, unseen: int, groups: int, rng, companion=False) -> tuple:
    """(the set with its group photos made, seeds {person: face indexes}, groups [(photo,
    listed people)], the people listed); the first `named` people have seeds, the next
    `unseen` none: they are only ever in group photos. With `companion`, the person with
    the most faces is never listed (a parent no one named) and is beside the first
    never-alone person on 70% of their photos, whose own face is found on half of them (a
    baby's), and on 30% of the other photos."""
    truth, photo = s["truth"], s["photo"].copy()
    people, counts = np.unique(truth[truth != ""], return_counts=True)
    ranked = [p for c, p in sorted(zip(-counts, people)) if -c >= 4]
    parent = ranked.pop(0) if companion and unseen and len(ranked) > named + unseen else None
    chosen = ranked[: named + unseen]
    pools, seeds = {}, {}
    for k, p in enumerate(chosen):
        idx = rng.permutation(np.flatnonzero(truth == p))
        cut = 2 if k < named else 0
        seeds[p], pools[p] = idx[:cut], list(idx[cut:])
    baby = chosen[named] if parent else None  # the person with the most faces holds them
    parent = list(rng.permutation(np.flatnonzero(truth == parent))) if parent else []
    strangers = list(
        rng.permutation(
            np.flatnonzero(
                ~np.isin(truth, chosen) & (truth != "") & ~np.isin(np.arange(len(truth)), parent)
            )
        )
    )
    made, next_photo = [], int(photo.max()) + 1
    for _ in range(groups):
        alive = [p for p in chosen if pools[p]]
        if len(alive) < 2:
            break
        listed = list(rng.choice(alive, min(len(alive), rng.integers(2, 5)), replace=False))
        members = [pools[p].pop() for p in listed]
        if rng.random() < (0.5 if baby in listed else 0.2):  # not found: listed, absent
            members.pop(listed.index(baby) if baby in listed else int(rng.integers(len(members))))
        if parent and rng.random() < (0.7 if baby in listed else 0.3):
            members.append(parent.pop())
        elif rng.random() < 1 / 3 and strangers:
            members.append(strangers.pop())
        photo[members] = next_photo
        made.append((next_photo, listed))
        next_photo += 1
    return dict(s, photo=photo), seeds, made, chosen


def measure(s: dict, pre: dict, args, how: str, seed: int = 0) -> dict:
    """Right, left and wrong over the group photos' faces, as `how` names them: "1" or
    "3": `imports.by_likeness` in that many rounds; "lists": `imports.name_listed`, the
    whole import (likeness, then the people no face was named for by the photos their
    lists share)."""
    rng = np.random.default_rng(seed)
    s, seeds, made, chosen = groups_of(s, args.named, args.unseen, args.groups, rng,
                                       args.companion)  # fmt: skip
    unseen = {p for p in chosen if not len(seeds[p])}
    out = {"faces": 0, "right": 0, "left": 0, "wrong": 0, "strangers": 0, "strangers_named": 0,
           "unseen": 0, "unseen_right": 0}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        lib, face_id = library_of(s, Path(tmp), pre)
        with lib:
            name_faces(lib, {p: face_id[seeds[p]] for p in chosen if len(seeds[p])})
            row = {r["path"]: r for r in lib.con.execute("SELECT * FROM photos")}
            photos = [(row[f"/bench/{ph}.jpg"], [_name(p) for p in listed]) for ph, listed in made]
            if how == "lists":
                name_listed(lib, photos, "Google Photos' people", {})
            else:
                by_likeness(lib, photos, {}, "Google Photos' people", int(how))
            got = dict(lib.con.execute(
                "SELECT f.id, pe.name FROM faces f JOIN people pe ON pe.id = f.person_id"
                " WHERE f.confirmed = 1").fetchall())  # fmt: skip
    for ph, listed in made:
        for i in np.flatnonzero(s["photo"] == ph):
            mine = s["truth"][i] in listed
            name = got.get(int(face_id[i]))
            out["faces"] += 1
            out["strangers"] += not mine
            out["unseen"] += s["truth"][i] in unseen
            out["unseen_right"] += s["truth"][i] in unseen and name == _name(s["truth"][i])
            if name is None:
                out["left"] += 1
            elif mine and name == _name(s["truth"][i]):
                out["right"] += 1
            else:
                out["wrong"] += 1
                out["strangers_named"] += not mine
    return out | {"photos": len(made)}


def _name(person: str) -> str:
    return person.replace("/", "-")  # the mixed library's people are "set/person"


def main() -> None:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--named", type=int, default=10)
    ap.add_argument("--unseen", type=int, nargs="*", default=[0, 3])
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--companion", action="store_true",
                    help="someone never listed beside the first never-alone person")  # fmt: skip
    args = ap.parse_args()
    fm = open_for_use(MODEL)
    pre = asdict(fm.pre)
    sets = with_mixed(args.sets)
    print(
        f"{cpu_name()}, {os.cpu_count()} cores; {MODEL}; {args.named} people named "
        f"on 2 faces each; up to {args.groups} group photos a set; {args.seeds} draws summed"
    )
    print("| set | never alone | how | group photos | faces | right (listed) | right (never "
          "alone) | left | wrong | strangers named |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for name, s in sets.items():
        for unseen in args.unseen:
            for how in (str(ROUNDS), "lists"):
                r = _summed(s, pre, args, unseen, how)
                listed = r["faces"] - r["strangers"]
                print(f"| {name} | {unseen} | {'likeness' if how != 'lists' else 'lists'} | "
                      f"{r['photos']} | {r['faces']} | {r['right'] / listed:.1%} | "
                      f"{r['unseen_right'] / max(r['unseen'], 1):.1%} of {r['unseen']} | "
                      f"{r['left'] / r['faces']:.1%} | {r['wrong']} "
                      f"({r['wrong'] / r['faces']:.1%}) | {r['strangers_named']} of "
                      f"{r['strangers']} |", flush=True)  # fmt: skip
                worst = max(worst, r["wrong"] / r["faces"])
    print(f"worst set: {worst:.1%} of faces given a name not theirs")


def _summed(s: dict, pre: dict, args, unseen: int, how: str) -> dict:
    """`measure`'s counts summed over `args.seeds` draws of the group photos."""
    out: dict[str, int] = {}
    for seed in range(args.seeds):
        r = measure(s, pre, argparse.Namespace(**vars(args) | {"unseen": unseen}), how, seed)
        out = {k: out.get(k, 0) + v for k, v in r.items()}
    return out


if __name__ == "__main__":
    main()
