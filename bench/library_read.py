"""Reading a big library's faces for clustering, placing and the people page's "same
person?" suggestions: `store.read_faces` (the columns those use, as arrays, and one
writable matrix) against the way it was (every column and the photo's path, an array a row
stacked) and against read_faces before 2026-12-05 (a row object a face, each holding its
embedding beside the matrix), each in its own process on one library of synthetic stacked
faces (128-d, as dlib's model gives; ~20 faces a person, one face a photo).

    .venv/bin/python bench/library_read.py [--faces 200000] [--rounds 3]

Prints seconds and peak MB of each read (rounds alternate them; medians), then of
`Library.suggestions` (its second call: the web page's server is warm), without and with
the page's cache of the stacked faces (`web.KeptWhileUnchanged`, nothing changed in between);
then the ratios of the median seconds (the way it was, and the rows, / read_faces), whether
the matrices are equal, and the ratio of the two views.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name

CHILD = """
import json, resource, sys, time
import numpy as np
from facetrain.library import store
from facetrain.library.library import Library
db, how, out = sys.argv[1], sys.argv[2], sys.argv[3]
lib = Library(db, lock=False)
if how not in ("was", "rows", "read_faces"):  # a view: STACK, or cached:STACK (the page's cache)
    from facetrain.library.web import KeptWhileUnchanged, _frozen_stacked
    stack = int(how.split(":")[-1])
    cache = KeptWhileUnchanged(db, _frozen_stacked) if ":" in how else None
    view = lambda: lib.suggestions(stack, 5, cache and cache.get)
    view()  # warm (BLAS started, the cache filled), as in the page's server
t0 = time.perf_counter()
if how == "was":
    rows = lib.con.execute("SELECT f.*, p.path FROM faces f JOIN photos p ON p.id = f.photo_id"
                           " WHERE " + store.FACE_SETS["stacked"] + " ORDER BY f.id").fetchall()
    emb = np.stack([store.from_blob(r["embedding"]) for r in rows])
elif how == "rows":  # read_faces until 2026-12-05: a row object a face, with its embedding
    rows = lib.con.execute("SELECT f.id, f.photo_id, f.person_id, f.confirmed, f.embedding"
                           " FROM faces f JOIN photos p ON p.id = f.photo_id WHERE"
                           " f.embedding IS NOT NULL AND (" + store.FACE_SETS["stacked"]
                           + ") ORDER BY f.id").fetchall()
    emb = store._embedded(rows)[0]
elif how == "read_faces":
    emb, rows = store.read_faces(lib.con, "stacked")
else:
    view()
    emb = np.zeros(0)
s = time.perf_counter() - t0
np.save(out, emb)
# this process's own peak (VmHWM): ru_maxrss carries the RSS of the parent it was forked
# from, which built the library (every figure read that parent's 2,069 MB at a million)
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")]
peak = (hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
print(json.dumps({"seconds": round(s, 3), "peak_mb": round(peak)}))
"""


def build(db: Path, faces: int) -> int:
    """A library of `faces` stacked faces; the id of its first stack."""
    sys.path.insert(0, str(Path(__file__).parent))
    from facetrain.library import store
    from facetrain.library.library import Library
    from library_scale import synthetic

    emb, label, _ = synthetic(faces)
    with Library(db, create=True) as lib, store.transaction(lib.con):
        pre = {"distance": "squared_l2", "threshold": 0.19}
        store.check_model(lib.con, pre, "bench", str(db), "bench")
        people = {int(k): store.new_person(lib.con) for k in np.unique(label)}
        for i, (e, k) in enumerate(zip(emb, label)):
            pid = store.add_photo(lib.con, f"/bench/{i}.jpg", f"{i:064x}", 1, 0.0, 100, 100,
                                  None, "ok", None)  # fmt: skip
            face = dict(box=[0, 0, 50, 50], landmarks=[], score=1.0, size=50.0,
                        sharpness=100.0, usable=True, embedding=e)  # fmt: skip
            (fid,) = store.insert_faces(lib.con, pid, [face])
            store.assign(lib.con, [(people[int(k)], fid)])
    return people[int(label[0])]


def main() -> None:
    from suggestions_memory import run_child

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.faces} stacked faces")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stack = build(Path(tmp) / "lib.db", args.faces)
        print(f"library built in {time.perf_counter() - t0:.0f} s")
        views = {str(stack): "suggestions", f"cached:{stack}": "suggestions, the page's cache"}
        runs: dict[str, list] = {"was": [], "rows": [], "read_faces": [],
                                 **{v: [] for v in views}}  # fmt: skip
        for _ in range(args.rounds):
            for how, got in runs.items():
                got.append(run_child(CHILD, Path(tmp) / "lib.db", how, f"{tmp}/{how}.npy"))
        if any("error" in r for got in runs.values() for r in got):
            print(json.dumps(runs))
            return
        rows = {how: {k: float(np.median([r[k] for r in got])) for k in ("seconds", "peak_mb")}
                for how, got in runs.items()}  # fmt: skip
        for how, r in rows.items():
            print(f"{views.get(how, how)}: {json.dumps(r)}; rounds "
                  f"{[r['seconds'] for r in runs[how]]}")  # fmt: skip
        same = all(np.array_equal(np.load(f"{tmp}/{how}.npy"), np.load(f"{tmp}/read_faces.npy"))
                   for how in ("was", "rows"))  # fmt: skip
    w, n = rows["was"], rows["read_faces"]
    print(f"seconds the way it was / read_faces = {w['seconds'] / n['seconds']:.2f} "
          f"({w['seconds']:.2f} / {n['seconds']:.2f}); peak MB {w['peak_mb']} / "
          f"{n['peak_mb']}; same matrix: {same}")  # fmt: skip
    r = rows["rows"]
    print(f"rows with their embeddings (read_faces before) / read_faces: seconds "
          f"{r['seconds'] / n['seconds']:.2f} ({r['seconds']:.2f} / {n['seconds']:.2f}), peak MB "
          f"{r['peak_mb']:.0f} / {n['peak_mb']:.0f}")  # fmt: skip
    v, c = rows[str(stack)], rows[f"cached:{stack}"]
    print(
        f"warm view / the page's cached view = {v['seconds'] / c['seconds']:.1f} "
        f"({v['seconds']:.3f} / {c['seconds']:.3f} s)"
    )


if __name__ == "__main__":
    main()
