"""The owner's word on the stacks: name, merge, split, reject, hide — and undo.

Every action is one transaction that also stores what it changed (the face rows and
people rows as they were before), so `undo` can put them back exactly, newest first.
Naming or merging confirms the faces (`confirmed = 1`): from then on clustering never
moves them, and a later re-cluster or model change keeps the name on those faces.
"""

from __future__ import annotations

import json

import numpy as np

from facetrain.evaluate.verification import distance_matrix
from facetrain.library.db import LibraryError, transaction


def people(con) -> list[dict]:
    """Stacks with their face and photo counts, largest first."""
    rows = con.execute(
        "SELECT pe.id, pe.name, pe.hidden, COUNT(f.id) AS faces,"
        " COUNT(DISTINCT f.photo_id) AS photos, SUM(f.confirmed) AS confirmed"
        " FROM people pe JOIN faces f ON f.person_id = pe.id"
        " GROUP BY pe.id ORDER BY pe.hidden, faces DESC, pe.id"
    ).fetchall()
    return [dict(r) for r in rows]


def stack_id(con, ref: str) -> int:
    """A stack by id or by name."""
    row = con.execute("SELECT id FROM people WHERE name = ?", (ref,)).fetchone()
    if row is None and ref.isdigit():
        row = con.execute("SELECT id FROM people WHERE id = ?", (int(ref),)).fetchone()
    if row is None:
        raise LibraryError(f"no stack or person {ref!r} (see `facetrain library people`)")
    return int(row[0])


def _snapshot(con, face_ids, people_ids) -> dict:
    faces = con.execute(
        f"SELECT id, person_id, confirmed, hidden FROM faces WHERE id IN ({_q(face_ids)})",
        list(face_ids),
    ).fetchall()
    ppl = con.execute(
        f"SELECT id, name, hidden FROM people WHERE id IN ({_q(people_ids)})", list(people_ids)
    ).fetchall()
    return {"faces": [list(r) for r in faces], "people": [list(r) for r in ppl]}


def _q(items) -> str:
    return ",".join("?" * len(items)) or "NULL"


def _faces_of(con, pid: int) -> list[int]:
    return [r[0] for r in con.execute("SELECT id FROM faces WHERE person_id = ?", (pid,))]


def _log(con, kind: str, description: str, before: dict, created=(), rejections=()) -> None:
    undo = dict(before, created=list(created), rejections=[list(r) for r in rejections])
    con.execute(
        "INSERT INTO actions(kind, description, undo) VALUES (?, ?, ?)",
        (kind, description, json.dumps(undo)),
    )


def name(con, ref: str, new_name: str) -> str:
    """Name a stack; naming it like an existing person merges it into that person."""
    new_name = new_name.strip()
    if not new_name:
        raise LibraryError("a name cannot be empty")
    pid = stack_id(con, ref)
    other = con.execute(
        "SELECT id FROM people WHERE name = ? AND id != ?", (new_name, pid)
    ).fetchone()
    if other is not None:
        return merge(con, str(other[0]), str(pid))
    with transaction(con):
        faces = _faces_of(con, pid)
        _log(con, "name", f"stack {pid} named {new_name!r}", _snapshot(con, faces, [pid]))
        con.execute("UPDATE people SET name = ? WHERE id = ?", (new_name, pid))
        con.execute("UPDATE faces SET confirmed = 1 WHERE person_id = ?", (pid,))
    return f"stack {pid} is now {new_name!r} ({len(faces)} faces)"


def merge(con, into: str, other: str) -> str:
    a, b = stack_id(con, into), stack_id(con, other)
    if a == b:
        raise LibraryError("cannot merge a stack with itself")
    with transaction(con):
        fa, fb = _faces_of(con, a), _faces_of(con, b)
        clash = con.execute(
            f"SELECT COUNT(*) FROM faces x JOIN faces y ON x.photo_id = y.photo_id"
            f" WHERE x.id IN ({_q(fa)}) AND y.id IN ({_q(fb)})",
            fa + fb,
        ).fetchone()[0]
        if clash:
            raise LibraryError(
                f"stacks {a} and {b} both have a face in {clash} photo(s): two faces of one "
                "photo are two people — reject the wrong face first"
            )
        _log(con, "merge", f"stack {b} merged into {a}", _snapshot(con, fa + fb, [a, b]))
        con.execute(
            "UPDATE faces SET person_id = ?, confirmed = 1 WHERE person_id IN (?, ?)", (a, a, b)
        )
        con.execute("UPDATE rejections SET person_id = ? WHERE person_id = ?", (a, b))
        con.execute("DELETE FROM people WHERE id = ?", (b,))
    return f"stack {b} merged into {a} ({len(fa) + len(fb)} faces)"


def split(con, ref: str, threshold: float, distance: str = "squared_l2") -> str:
    """Sub-cluster a stack at a tighter threshold; the largest part keeps the stack (and
    its name), the others become new unnamed stacks."""
    from facetrain.library.cluster import agglomerate
    from facetrain.library.scan import read_faces

    pid = stack_id(con, ref)
    emb, rows = read_faces(con, "f.person_id = ?", (pid,))
    if len(rows) < 2:
        raise LibraryError(f"stack {pid} has {len(rows)} face(s): nothing to split")
    photo = np.array([r["photo_id"] for r in rows])
    labels, _ = agglomerate(emb, photo, threshold, distance)
    parts = sorted((np.flatnonzero(labels == c) for c in np.unique(labels)), key=len, reverse=True)
    if len(parts) == 1:
        return f"stack {pid} holds together at threshold {threshold:.3f}: not split"
    with transaction(con):
        ids = [r["id"] for r in rows]
        before = _snapshot(con, ids, [pid])
        created = []
        for part in parts[1:]:
            new = con.execute("INSERT INTO people(name) VALUES (NULL)").lastrowid
            created.append(new)
            con.executemany(
                "UPDATE faces SET person_id = ?, confirmed = 0 WHERE id = ?",
                [(new, rows[i]["id"]) for i in part],
            )
        _log(con, "split", f"stack {pid} split in {len(parts)}", before, created)
    return f"stack {pid} split: kept {len(parts[0])} faces, new stacks {created}"


def reject(con, face_id: int) -> str:
    """This face is not this person: it leaves the stack and never comes back to it."""
    row = con.execute("SELECT person_id FROM faces WHERE id = ?", (face_id,)).fetchone()
    if row is None:
        raise LibraryError(f"no face {face_id}")
    if row[0] is None:
        raise LibraryError(f"face {face_id} is in no stack")
    pid = row[0]
    with transaction(con):
        _log(con, "reject", f"face {face_id} is not stack {pid}", _snapshot(con, [face_id], [pid]),
             rejections=[(face_id, pid)])  # fmt: skip
        con.execute("INSERT OR IGNORE INTO rejections VALUES (?, ?)", (face_id, pid))
        con.execute("UPDATE faces SET person_id = NULL, confirmed = 0 WHERE id = ?", (face_id,))
    return f"face {face_id} removed from stack {pid} (remembered)"


def hide(con, ref: str) -> str:
    pid = stack_id(con, ref)
    with transaction(con):
        faces = _faces_of(con, pid)
        _log(con, "hide", f"stack {pid} hidden", _snapshot(con, faces, [pid]))
        con.execute("UPDATE people SET hidden = 1 WHERE id = ?", (pid,))
        con.execute("UPDATE faces SET hidden = 1 WHERE person_id = ?", (pid,))
    return f"stack {pid} hidden ({len(faces)} faces)"


def undo(con, steps: int = 1) -> list[str]:
    """Revert the last `steps` curating actions, newest first."""
    done = []
    for _ in range(steps):
        act = con.execute(
            "SELECT id, description, undo FROM actions WHERE undone = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if act is None:
            break
        u = json.loads(act["undo"])
        with transaction(con):
            for pid, nm, hidden in u["people"]:
                con.execute(
                    "INSERT INTO people(id, name, hidden) VALUES (?, ?, ?) ON CONFLICT(id)"
                    " DO UPDATE SET name = excluded.name, hidden = excluded.hidden",
                    (pid, nm, hidden),
                )
            con.executemany(
                "UPDATE faces SET person_id = ?, confirmed = ?, hidden = ? WHERE id = ?",
                [(p, c, h, f) for f, p, c, h in u["faces"]],
            )
            con.executemany("DELETE FROM rejections WHERE face_id = ? AND person_id = ?",
                            [tuple(r) for r in u["rejections"]])  # fmt: skip
            for pid in u["created"]:
                con.execute("DELETE FROM people WHERE id = ?", (pid,))
            con.execute("UPDATE actions SET undone = 1 WHERE id = ?", (act["id"],))
        done.append(act["description"])
    return done


def prototypes(con) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Every confirmed face of every named, visible person: (embeddings, person ids, names)."""
    from facetrain.library.scan import read_faces

    emb, rows = read_faces(
        con,
        "f.confirmed = 1 AND f.hidden = 0 AND f.person_id IN "
        "(SELECT id FROM people WHERE name IS NOT NULL AND hidden = 0)",
    )
    names = {r[0]: r[1] for r in con.execute("SELECT id, name FROM people WHERE name IS NOT NULL")}
    return emb, np.array([r["person_id"] for r in rows], np.int64), names


def identify(
    emb: np.ndarray,
    protos: tuple,
    threshold: float,
    distance: str = "squared_l2",
    margin: float = 0.0,
) -> list[dict]:
    """Name the faces of ONE photo from the named people: each face's distance to a person
    is the nearest of that person's prototypes; a person is given to at most one face of
    the photo (the assignment with the least total distance); a face stays `unknown` when
    its person is not under the threshold or the runner-up is within `margin`."""
    from scipy.optimize import linear_sum_assignment

    pemb, pid, names = protos
    if len(pemb) == 0 or len(emb) == 0:
        return [{"name": "unknown", "nearest": None, "distance": None, "runner_up": None}
                for _ in emb]  # fmt: skip
    d = distance_matrix(emb, pemb, distance)
    people_ids = np.unique(pid)
    per = np.stack([d[:, pid == p].min(1) for p in people_ids], 1)
    rows, cols = linear_sum_assignment(per)
    given = dict(zip(rows.tolist(), cols.tolist()))
    out = []
    for i, row in enumerate(per):
        order = np.argsort(row)
        j = given.get(i, int(order[0]))
        best = float(row[j])
        others = np.delete(row, j)
        second = float(others.min()) if len(others) else None
        ok = i in given and best < threshold and (second is None or second - best >= margin)
        out.append(
            {
                "name": names[int(people_ids[j])] if ok else "unknown",
                "nearest": names[int(people_ids[order[0]])],
                "distance": best,
                "runner_up": second,
            }
        )
    return out
