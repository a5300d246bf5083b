"""Issue 20: does learning from the owner's names help? `library personalize` measured on
the shared photo sets and on a larger labelled set, with the library's default model.

    .venv/bin/python bench/personalize.py [--out bench/out/personalize.json]

- photos/bbt (reference + group photos) and photos/friends: each scanned into a library of
  its own (`pretrained:dlib_resnet`); every face of a photo with one usable face is named
  after its folder, as an owner would; then `Library.personalize()`, the command's own path
  (hold-out measurement, adapter, re-clustering).
- a "family" from mini-train: FAMILY identities named (their faces confirmed), STRANGERS
  other identities in the library unnamed, their truth known to the measurement only;
  `personalize.measure` on those faces (what `library personalize` measures in a library).

Before/after per set: BCubed F of the held-back faces' stacks, identify accuracy on the
held-back named faces, the share of strangers' faces given a name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MODEL = "pretrained:dlib_resnet"


def photo_set(name: str, folders: list[Path], work: Path) -> dict:
    """Scan the folders into a new library, name single-face photos by folder, personalize."""
    from facetrain.library import store
    from facetrain.library.library import Library

    photos = work / name
    for f in folders:
        shutil.copytree(f, photos / f.name)
    with Library(work / f"{name}.db", create=True) as lib:
        lib.scan(photos, lib.model(MODEL))
        lib.cluster()
        truth: dict[str, list[int]] = {}
        for photo in set(store.read_faces(lib.con, "free")[1].photo.tolist()):
            faces = store.faces_of_photo(lib.con, photo, usable_only=True)
            who = Path(store.photo_path(lib.con, photo)).parent.name
            if len(faces) == 1 and who not in ("group",):
                truth.setdefault(who, []).append(faces[0]["id"])
        with store.transaction(lib.con):
            for who, ids in sorted(truth.items()):
                pid = store.new_person(lib.con)
                store.name_person(lib.con, pid, who)
                store.assign(lib.con, [(pid, f) for f in ids], confirmed=1)
        return lib.personalize()


def family_set(family: int, strangers: int, per_stranger: int = 5, seed: int = 0) -> dict:
    """mini-train identities: `family` named, `strangers` more in the library unnamed."""
    from facetrain.inference.feed import embed_model
    from facetrain.inference.saved import open_model
    from facetrain.inference.sources import Images
    from facetrain.library.personalize import Faces, measure
    from library_populations import family as family_members

    items = family_members(family, strangers, per_stranger, seed)  # the family first
    index = {n: k for k, n in enumerate(dict.fromkeys(n for _, n in items))}
    paths = [Path(p) for p, _ in items]
    truth = [index[n] for _, n in items]
    person = [k if k < family else -1 for k in truth]
    fm = open_model(MODEL)
    emb = embed_model(fm, Images([str(p) for p in paths], fm.pre.alignment))
    faces = Faces(emb.astype(np.float32), np.array(person), np.arange(len(paths)), np.array(truth))
    report = measure(faces, fm.pre.distance, fm.pre.threshold)
    return report | {"named_faces": int((faces.person >= 0).sum()), "people": family,
                     "unnamed_faces": int((faces.person < 0).sum())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/out/personalize.json"))
    ap.add_argument("--family", type=int, default=30)
    ap.add_argument("--strangers", type=int, default=300)
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = SHARED / "photos"
        for name, folders in (("bbt", [photos / "bbt" / "reference", photos / "bbt" / "group"]),
                              ("friends", sorted((photos / "friends").iterdir()))):  # fmt: skip
            t0 = time.perf_counter()
            rows[name] = photo_set(name, folders, Path(tmp)) | {"seconds": time.perf_counter() - t0}
            print(name, json.dumps(rows[name]), flush=True)
    t0 = time.perf_counter()
    rows["mini-train family"] = family_set(args.family, args.strangers) | {
        "seconds": time.perf_counter() - t0}  # fmt: skip
    print("mini-train family", json.dumps(rows["mini-train family"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "| set | named faces / people | held back | BCubed F | identify accuracy "
        "| strangers named |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        cells = [f"{r[k + '_before']} → {r[k + '_after']}" for k in
                 ("bcubed_f", "identify_accuracy", "stranger_false_name_rate")]  # fmt: skip
        print(
            f"| {name} | {r['named_faces']} / {r['people']} | {r['held_back_faces']} | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
