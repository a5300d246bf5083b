"""The library database: one SQLite file (WAL) with photos, faces, people and the curating log.

Labels live on faces (`faces.person_id` with `confirmed = 1` is the owner's word; `0` is a
clustering guess), so names survive re-clustering and a change of model. Every write is a
transaction: a kill -9 loses at most the photo being scanned. The schema version and the
model's preprocessing record are stored in `meta`; a library made by another model or by a
newer facetrain is refused with a clear message instead of being mixed or damaged.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np

from facetrain.errors import FacetrainError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, sha256 TEXT NOT NULL,
    size INTEGER, mtime REAL, width INTEGER, height INTEGER, taken TEXT,
    status TEXT NOT NULL, error TEXT, duplicate_of INTEGER
);
CREATE INDEX IF NOT EXISTS photos_sha ON photos(sha256);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE, hidden INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL, landmarks TEXT, score REAL,
    size REAL, sharpness REAL, usable INTEGER NOT NULL,
    embedding BLOB,
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    hidden INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS faces_photo ON faces(photo_id);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE TABLE IF NOT EXISTS rejections (
    face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (face_id, person_id)
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    kind TEXT NOT NULL, description TEXT NOT NULL, undo TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
"""


class LibraryError(FacetrainError):
    """A library that cannot be used as asked: the message says why and what to do."""


def connect(path: str | os.PathLike, *, create: bool = False) -> sqlite3.Connection:
    """Open (or create) a library; refuses a newer schema."""
    path = Path(path)
    if not path.exists() and not create:
        raise LibraryError(f"{path}: no library here (run `facetrain library scan` first)")
    if path.exists() and path.is_dir():
        raise LibraryError(f"{path}: is a folder; --db names the library's database file")
    try:
        con = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA synchronous=NORMAL")
        if create:
            con.executescript(SCHEMA)
        version = get_meta(con, "schema_version")
    except sqlite3.DatabaseError as e:
        raise LibraryError(f"{path}: not a facetrain library ({e})") from None
    if version is None:
        if not create:
            raise LibraryError(f"{path}: not a facetrain library (no schema version)")
        set_meta(con, "schema_version", str(SCHEMA_VERSION))
    elif int(version) > SCHEMA_VERSION:
        raise LibraryError(
            f"{path}: made by a newer facetrain (schema {version}, this one reads "
            f"{SCHEMA_VERSION}); upgrade facetrain — the library was not touched"
        )
    con.row_factory = sqlite3.Row
    return con


def get_meta(con: sqlite3.Connection, key: str) -> str | None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else row[0]


def set_meta(con: sqlite3.Connection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def model_record(con: sqlite3.Connection) -> dict | None:
    """The preprocessing record of the library's model (its distance by today's name)."""
    from facetrain.distances import ALIASES

    text = get_meta(con, "model")
    if text is None:
        return None
    rec = json.loads(text)
    if "distance" in rec:
        rec["distance"] = ALIASES.get(rec["distance"], rec["distance"])
    return rec


def check_model(con: sqlite3.Connection, pre: dict, source: str, db: str) -> None:
    """The library's embeddings must all come from one model and recipe."""
    have = model_record(con)
    if have is None:
        set_meta(con, "model", json.dumps(pre, sort_keys=True))
        set_meta(con, "model_source", source)
        return
    if have != json.loads(json.dumps(pre, sort_keys=True)):
        raise LibraryError(
            f"{db} holds embeddings of another model ({get_meta(con, 'model_source')}); "
            f"use `facetrain library migrate --db {db} --model {source}` to re-embed it "
            "(names are kept)"
        )


def to_blob(e: np.ndarray) -> bytes:
    return np.asarray(e, np.float32).tobytes()


def from_blob(b: bytes) -> np.ndarray:
    return np.frombuffer(b, np.float32)


class transaction:
    """`with transaction(con): ...` — BEGIN IMMEDIATE … COMMIT, ROLLBACK on error."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type, exc, tb):
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
