"""Issue 29 (1), as a property: random sequences of the owner's work — scans after moves,
renames, copies and deletions; name, merge, split, move, reject, hide, undo; re-clustering
— checked against a simple model of the owner's intent: a confirmed face changes person
only when the owner moves it (or merges or renames its person), and undo puts back exactly
what the action changed. Real photos (photos/bbt), scanned once; every example starts from
a copy of that library."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conftest import BBT
from facetrain.library.library import Library
from facetrain.library.store import LibraryError
from helpers import make_model

_HOME: dict = {}


def _home() -> dict:
    """A scanned, clustered library of two folders (built once): work/ is what examples use
    (its paths are the ones the library records), template/ the copy each starts from."""
    if _HOME:
        return _HOME
    root = Path(tempfile.mkdtemp(prefix="owner-model-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # 15 MB a run, left in /tmp
    work = root / "work"
    for folder, people in (("a", ("amy", "howard")), ("b", ("penny", "sheldon"))):
        for who in people:
            for p in sorted((BBT / "reference" / who).iterdir())[:2]:
                (work / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(p, work / folder / p.name)
    shutil.copy(sorted((BBT / "group").iterdir())[0], work / "b" / "group.jpg")
    from facetrain.inference.saved import open_model

    model = open_model(str(make_model(root / "m.safetensors")))
    with Library(root / "lib.db", create=True) as lib:
        for folder in ("a", "b"):
            lib.scan(work / folder, model)
        lib.cluster(threshold=0.3)
    con = sqlite3.connect(root / "lib.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copytree(work, root / "template" / "work")
    shutil.copy(root / "lib.db", root / "template" / "lib.db")
    _HOME.update(root=root, work=work, model=model)
    return _HOME


def _labels(con) -> tuple:
    """Everything curating may change: faces' labels, people, rejections."""
    q = ("SELECT id, person_id, confirmed, hidden FROM faces ORDER BY id",
         "SELECT id, name, hidden FROM people WHERE id IN (SELECT person_id FROM faces)"
         " OR name IS NOT NULL ORDER BY id",
         "SELECT face_id, person_id FROM rejections ORDER BY 1, 2")  # fmt: skip
    return tuple(tuple(map(tuple, con.execute(s).fetchall())) for s in q)


class Owner(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        home = _home()
        self.work, self.model = home["work"], home["model"]
        shutil.rmtree(self.work)
        shutil.copytree(home["root"] / "template" / "work", self.work)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{home['root']}/lib.db{suffix}").unlink(missing_ok=True)
        shutil.copy(home["root"] / "template" / "lib.db", home["root"] / "lib.db")
        self.lib = Library(home["root"] / "lib.db")
        self.intent: dict[int, int] = {}  # confirmed face -> its person, as the owner made it
        self.names = 0

    def teardown(self):
        self.lib.close()

    # --- what the library holds ------------------------------------------------------
    def confirmed(self) -> dict[int, int]:
        rows = self.lib.con.execute("SELECT id, person_id FROM faces WHERE confirmed = 1")
        return {f: p for f, p in rows}

    def stacks(self) -> list[int]:
        return [p["id"] for p in self.lib.people()]

    def faces_of(self, stack: int) -> list[int]:
        return [f for (f,) in self.lib.con.execute(
            "SELECT id FROM faces WHERE person_id = ?", (stack,))]  # fmt: skip

    def files(self) -> list[Path]:
        return sorted(p for p in self.work.rglob("*") if p.is_file())

    # --- the owner's work --------------------------------------------------------------
    @precondition(lambda self: self.stacks())
    @rule(k=st.integers(0, 50), new=st.booleans())
    def name(self, k, new):
        s = self.stacks()[k % len(self.stacks())]
        named = [p for p in self.lib.people() if p["name"]]
        name = f"Person {self.names}" if new or not named else named[k % len(named)]["name"]
        self.names += 1
        other = next((p["id"] for p in named if p["name"] == name and p["id"] != s), None)
        try:
            self.lib.name(str(s), name)
        except LibraryError:
            return  # refused (two faces of one photo): nothing changed
        into = s if other is None else other
        for f in self.faces_of(into):
            self.intent[f] = into

    @precondition(lambda self: len(self.stacks()) > 1)
    @rule(i=st.integers(0, 50), j=st.integers(0, 50))
    def merge(self, i, j):
        ss = self.stacks()
        a, b = ss[i % len(ss)], ss[j % len(ss)]
        try:
            self.lib.merge(str(a), str(b))
        except LibraryError:
            return
        for f in self.faces_of(a):
            self.intent[f] = a

    @precondition(lambda self: self.stacks())
    @rule(k=st.integers(0, 50))
    def split(self, k):
        s = self.stacks()[k % len(self.stacks())]
        with contextlib.suppress(LibraryError):  # confirmed faces stay: the intent unchanged
            self.lib.split(str(s), threshold=0.05)

    @precondition(lambda self: len(self.stacks()) > 1)
    @rule(f=st.integers(0, 200), k=st.integers(0, 50))
    def move(self, f, k):
        faces = [x for (x,) in self.lib.con.execute("SELECT id FROM faces ORDER BY id")]
        face, to = faces[f % len(faces)], self.stacks()[k % len(self.stacks())]
        try:
            self.lib.move(face, str(to))
        except LibraryError:
            return
        self.intent[face] = to

    @precondition(lambda self: self.stacks())
    @rule(f=st.integers(0, 200))
    def reject(self, f):
        faces = [x for (x,) in self.lib.con.execute(
            "SELECT id FROM faces WHERE person_id IS NOT NULL ORDER BY id")]  # fmt: skip
        try:
            self.lib.reject(faces[f % len(faces)])
        except LibraryError:
            return
        self.intent.pop(faces[f % len(faces)], None)

    @precondition(lambda self: self.stacks())
    @rule(k=st.integers(0, 50), show=st.booleans())
    def hide(self, k, show):
        s = self.stacks()[k % len(self.stacks())]
        (self.lib.unhide if show else self.lib.hide)(str(s))

    @rule(what=st.sampled_from(["name", "merge", "split", "move", "reject", "hide"]),
          k=st.integers(0, 50), f=st.integers(0, 200))  # fmt: skip
    def act_then_undo(self, what, k, f):
        """Undo puts back exactly what the action changed."""
        if not self.stacks():
            return
        before, intent = _labels(self.lib.con), dict(self.intent)
        n_actions = self.lib.con.execute("SELECT count(*) FROM actions").fetchone()[0]
        {"name": lambda: self.name(k, True), "merge": lambda: self.merge(k, k + 1),
         "split": lambda: self.split(k), "move": lambda: self.move(f, k),
         "reject": lambda: self.reject(f), "hide": lambda: self.hide(k, False)}[what]()  # fmt: skip
        if self.lib.con.execute("SELECT count(*) FROM actions").fetchone()[0] == n_actions:
            return  # refused or nothing to do: nothing to undo
        self.lib.undo()
        assert _labels(self.lib.con) == before, what
        self.intent = intent

    @rule(threshold=st.sampled_from([None, 0.05, 0.3, 2.0]))
    def cluster(self, threshold):
        with contextlib.suppress(LibraryError):
            self.lib.cluster(threshold=threshold)

    # --- the photos' folders, then a scan ----------------------------------------------
    @rule(k=st.integers(0, 50), op=st.sampled_from(["move", "rename", "copy", "delete"]),
          first=st.sampled_from(["a", "b"]))  # fmt: skip
    def files_then_scan(self, k, op, first):
        files = self.files()
        if not files:
            return
        src = files[k % len(files)]
        other = self.work / ("b" if src.parent.name == "a" else "a")
        dst = {"move": other / src.name, "rename": src.with_name(f"r{k}-{src.name}"),
               "copy": other / f"c{k}-{src.name}"}.get(op)  # fmt: skip
        if dst is not None and dst.exists():
            return
        if op == "delete":
            src.unlink()
        elif op == "copy":
            shutil.copy(src, dst)
        else:
            src.rename(dst)
        for folder in (first, "b" if first == "a" else "a"):
            self.lib.scan(self.work / folder, self.model)

    @invariant()
    def confirmed_faces_are_where_the_owner_put_them(self):
        assert self.confirmed() == self.intent


TestOwner = pytest.mark.skipif(not BBT.exists(), reason=f"{BBT} absent (real data not here)")(
    Owner.TestCase
)
TestOwner.settings = settings(max_examples=60, stateful_step_count=20, deadline=None,
                              suppress_health_check=list(HealthCheck))  # fmt: skip
