"""The owner's work is never lost (issue 29, requirement 1): what the owner confirmed stays
confirmed and named through splits, moves, duplicates, metadata edits and rescans."""

from __future__ import annotations

import numpy as np

from helpers import embedded_library
from test_library_populations import population


def _person_of(lib) -> dict[int, tuple]:
    rows = lib.con.execute("SELECT id, person_id, confirmed FROM faces").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_split_keeps_the_confirmed_faces_with_their_name(tmp_path):
    """A named stack: 10 confirmed faces of one woman and 25 guesses of a look-alike (the
    larger part). Split keeps the name on the confirmed woman and moves the look-alike."""
    from facetrain.library import store

    emb, who = population(2, 25, 0.12, seed=5)
    mine = np.flatnonzero(who == 0)[:10]
    other = np.flatnonzero(who == 1)
    with embedded_library(tmp_path / "lib.db", emb) as lib:
        with store.transaction(lib.con):
            pid = store.new_person(lib.con)
            store.name_person(lib.con, pid, "Anna")
            store.assign(lib.con, [(pid, int(i) + 1) for i in mine], confirmed=1)
            store.assign(lib.con, [(pid, int(i) + 1) for i in other], confirmed=0)
        before = _person_of(lib)
        out = lib.split("Anna", threshold=0.06)
        after = _person_of(lib)
        assert "kept 10 faces" in out, out
        assert all(after[int(i) + 1] == (pid, 1) for i in mine)
        moved = {after[int(i) + 1][0] for i in other}
        assert len(moved) == 1 and pid not in moved and None not in moved
        assert {p["name"]: p["faces"] for p in lib.people()}["Anna"] == 10
        lib.undo()
        assert _person_of(lib) == before
