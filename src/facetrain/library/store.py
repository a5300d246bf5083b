"""The library's store: one SQLite file (WAL) with photos, faces, people and the curating
log — and every SQL statement the library runs, as a named function, so the rest of the
library (scan, cluster, curate, the `Library` object) and its adapters (the CLI, the web
page) speak in operations, never in SQL.

Labels live on faces (`faces.person_id` with `confirmed = 1` is the owner's word; `0` is a
clustering guess), so names survive re-clustering and a change of model. Every write is a
transaction: a kill -9 loses at most the photo being scanned. The schema version and the
model's preprocessing record are stored in `meta`; a library made by another model or by a
newer facetrain is refused with a clear message instead of being mixed or damaged.

A store only stores: it returns and keeps plain rows and arrays (embeddings as the model
gave them); the owner's adapter, clustering and every decision belong to `Library`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrain.errors import FacetrainError

SCHEMA_VERSION = 1

# the owner's personal adapters (library/personalize.py); added to a library made before
# them on first use
ADAPTERS = """
CREATE TABLE IF NOT EXISTS adapters (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    model_hash TEXT NOT NULL, weights BLOB NOT NULL, report TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
"""

# faces and people are named by id in the curating log's undo records and the thumbnails:
# an id is never given twice (AUTOINCREMENT), so an old record cannot land on a newcomer
PEOPLE = """
CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, hidden INTEGER NOT NULL DEFAULT 0
);"""
FACES = """
CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL, landmarks TEXT, score REAL,
    size REAL, sharpness REAL, usable INTEGER NOT NULL,
    embedding BLOB,
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    hidden INTEGER NOT NULL DEFAULT 0
);"""
FACE_INDEXES = """
CREATE INDEX IF NOT EXISTS faces_photo ON faces(photo_id);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);"""

SCHEMA = (
    ADAPTERS
    + """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, sha256 TEXT NOT NULL,
    size INTEGER, mtime REAL, width INTEGER, height INTEGER, taken TEXT,
    status TEXT NOT NULL, error TEXT, duplicate_of INTEGER, pixels TEXT, searched REAL
);
CREATE INDEX IF NOT EXISTS photos_sha ON photos(sha256);
"""
    + PEOPLE.format(table="people")
    + FACES.format(table="faces")
    + FACE_INDEXES
    + """
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
)


class LibraryError(FacetrainError):
    """A library that cannot be used as asked: the message says why and what to do."""


def connect(
    path: str | os.PathLike, *, create: bool = False, write: bool = True
) -> sqlite3.Connection:
    """Open (or create) a library. What is at `path` is looked at read-only first: another
    program's SQLite file, a damaged or newer library is refused before anything touches
    it. A read-only file or folder is opened read-only for `write=False` (viewing), and
    refused with the reason otherwise."""
    path = Path(path)
    if not path.exists() and not create:
        raise LibraryError(f"{path}: no library here (run `facetrain library scan` first)")
    if path.exists() and path.is_dir():
        raise LibraryError(f"{path}: is a folder; --db names the library's database file")
    version = _version_of(path) if path.exists() else None
    if version is None and path.exists() and not create:
        raise LibraryError(f"{path}: not a facetrain library (an empty database)")
    writable = is_writable(path)
    if not writable and (write or version is None):
        raise LibraryError(read_only(path))
    try:
        if not writable:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                  isolation_level=None)  # fmt: skip
        else:
            con = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA synchronous=NORMAL")
            if create:
                con.executescript(SCHEMA)
            if version is None:
                set_meta(con, "schema_version", str(SCHEMA_VERSION))
            _add_columns(con)
            _never_reuse_ids(con)
    except sqlite3.DatabaseError as e:
        raise LibraryError(f"{path}: cannot be opened as a library ({e})") from None
    con.row_factory = sqlite3.Row
    return con


def is_writable(path: Path) -> bool:
    """The library at `path` (and the files beside it) can be changed here."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def read_only(path: Path) -> str:
    return (f"{path}: the library file or its folder is read-only (viewing commands read it "
            "as it is; a change needs write access)")  # fmt: skip


def _version_of(path: Path) -> int | None:
    """The schema version of the library at `path`, read without writing a byte; None for
    an empty file (a new library). Refuses what is not a facetrain library we can read."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError:  # a WAL file it may not create: read it as it is
            con.close()
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if (
            "meta" in tables) else {}  # fmt: skip
        con.close()
    except sqlite3.DatabaseError as e:
        raise LibraryError(f"{path}: not a facetrain library ({e}); nothing was changed") from None
    if not tables:
        return None
    if "schema_version" not in meta:
        raise LibraryError(f"{path}: another program's SQLite database, not a facetrain library "
                           "(no schema version); nothing was changed")  # fmt: skip
    try:
        version = int(meta["schema_version"])
    except (TypeError, ValueError):
        raise LibraryError(f"{path}: a damaged library: schema version "
                           f"{meta['schema_version']!r} is not a number; nothing was changed"
                           ) from None  # fmt: skip
    if "model" in meta:
        _model_of(meta["model"])
    if version > SCHEMA_VERSION:
        raise LibraryError(
            f"{path}: made by a newer facetrain (schema {version}, this one reads "
            f"{SCHEMA_VERSION}); upgrade facetrain — the library was not touched"
        )
    return version


def _add_columns(con: sqlite3.Connection) -> None:
    """Columns added to a library made before them; a read-only file is left as it is: the
    photo's pixel digest (a photo is known by its pixels: a metadata edit or a move keeps
    it), and the smallest face it was searched for (`searched`; none: the default gate)."""
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(photos)")}
        if cols and "pixels" not in cols:
            con.execute("ALTER TABLE photos ADD COLUMN pixels TEXT")
        if cols and "searched" not in cols:
            con.execute("ALTER TABLE photos ADD COLUMN searched REAL")
        con.execute("CREATE INDEX IF NOT EXISTS photos_pixels ON photos(pixels)")
    except sqlite3.OperationalError:
        pass


def _never_reuse_ids(con: sqlite3.Connection) -> None:
    """A library made before ids were never given twice: its people and faces tables are
    rebuilt once (one transaction) with AUTOINCREMENT, counting on from past every id they or
    the curating log hold, so no undo record names a face or person that comes later."""
    if _counts_on(con):
        return
    con.execute("PRAGMA foreign_keys=OFF")  # a table rebuilt is not a row deleted
    try:
        _rebuild_counting_on(con)
    except sqlite3.OperationalError:  # a full disk, a long lock: as it was, tried next time
        pass
    finally:
        con.execute("PRAGMA foreign_keys=ON")


def _rebuild_counting_on(con: sqlite3.Connection) -> None:
    """`_never_reuse_ids`' one transaction: both tables rebuilt, their counters set."""
    with transaction(con):
        if _counts_on(con):  # another process did it first
            return
        last = _logged_ids(con)
        for table, text in (("people", PEOPLE), ("faces", FACES)):
            _rebuild(con, table, text)
            top = con.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0
            con.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
            con.execute("INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)",
                        (table, max(top, last[table])))  # fmt: skip
        for index in FACE_INDEXES.strip().splitlines():
            con.execute(index)


def _rebuild(con: sqlite3.Connection, table: str, text: str) -> None:
    """A table made again by its CREATE `text`, its rows copied column by column."""
    cols = ", ".join(r[1] for r in con.execute(f"PRAGMA table_info({table})"))
    con.execute(text.format(table=f"{table}_new"))
    con.execute(f"INSERT INTO {table}_new({cols}) SELECT {cols} FROM {table}")
    con.execute(f"DROP TABLE {table}")
    con.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


def _counts_on(con: sqlite3.Connection) -> bool:
    row = con.execute("SELECT sql FROM sqlite_master WHERE name = 'faces'").fetchone()
    return row is None or "AUTOINCREMENT" in row[0]


def _logged_ids(con: sqlite3.Connection) -> dict[str, int]:
    """The highest face and person id the curating log's undo records name."""
    faces, people = [0], [0]
    for (text,) in con.execute("SELECT undo FROM actions"):
        undo = json.loads(text)
        pairs = undo.get("rejections", []) + undo.get("rejected", [])
        faces += [r[0] for r in undo.get("faces", []) + pairs]
        people += [r[0] for r in undo.get("people", [])] + [r[1] for r in pairs]
        people += [r[1] for r in undo.get("faces", []) if r[1] is not None]
        people += undo.get("created", [])
    return {"faces": max(faces), "people": max(people)}


def get_meta(con: sqlite3.Connection, key: str) -> str | None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else row[0]


def set_meta(con: sqlite3.Connection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def del_meta(con: sqlite3.Connection, key: str) -> None:
    con.execute("DELETE FROM meta WHERE key = ?", (key,))


def _model_of(text: str) -> dict:
    try:
        rec = json.loads(text)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        raise LibraryError(f"a damaged library: its model record {text[:60]!r} is not a "
                           "record; nothing was changed")  # fmt: skip
    return rec


def model_record(con: sqlite3.Connection) -> dict | None:
    """The preprocessing record of the library's model (its distance by today's name)."""
    from facetrain.distances import ALIASES

    text = get_meta(con, "model")
    if text is None:
        return None
    rec = _model_of(text)
    if "distance" in rec:
        rec["distance"] = ALIASES.get(rec["distance"], rec["distance"])
    return rec


def check_model(con: sqlite3.Connection, pre: dict, source: str, db: str,
                digest: str | None = None, fields: tuple[str, ...] | None = None,
                ) -> None:  # fmt: skip
    """The library's embeddings must all come from one model: the same preprocessing —
    the record's `fields` (default: all of it), the record the library was made with kept
    as it was — and (when known) the same weights, by content hash. The model found at a
    new place is remembered there."""
    have = model_record(con)
    now = json.loads(json.dumps(pre, sort_keys=True))
    if fields is None and have is not None:
        fields = tuple(have.keys() | now.keys())
    if have is None:
        set_meta(con, "model", json.dumps(pre, sort_keys=True))
    elif {k: have.get(k) for k in fields} != {k: now.get(k) for k in fields} or (
        digest is not None and get_meta(con, "model_hash") not in (None, digest)
    ):
        raise LibraryError(
            f"{db} holds embeddings of another model ({get_meta(con, 'model_source')}); "
            f"use `facetrain library migrate --db {db} --model {source}` to re-embed it "
            "(names are kept)"
        )
    for key, value in (("model_source", source), ("model_hash", digest)):
        if value is not None and get_meta(con, key) != value:  # a write only when it moved
            set_meta(con, key, value)


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


def _q(items) -> str:
    return ",".join("?" * len(items)) or "NULL"


# --- photos --------------------------------------------------------------------------------


def photos_under(con, root: str) -> dict[str, sqlite3.Row]:
    """The photos below the folder `root`, by path: an exact prefix match (SQL LIKE would
    ignore case and read `_` and `%` as wildcards, so `my_pics` would take the photos of
    `my-pics`)."""
    prefix = root.rstrip("/") + "/"
    rows = con.execute("SELECT * FROM photos WHERE substr(path, 1, ?) = ?", (len(prefix), prefix))
    return {r["path"]: r for r in rows}


def touch_photo(con, photo_id: int, mtime: float) -> None:
    con.execute("UPDATE photos SET mtime = ? WHERE id = ?", (mtime, photo_id))


def move_photo(con, photo_id: int, path: str, size: int, mtime: float) -> None:
    con.execute(
        "UPDATE photos SET path = ?, size = ?, mtime = ? WHERE id = ?",
        (path, size, mtime, photo_id),
    )


def photo(con, photo_id: int) -> sqlite3.Row:
    return con.execute("SELECT * FROM photos WHERE id = ?", (photo_id,)).fetchone()


def twin_of(con, digest: str, path: str, column: str = "sha256") -> sqlite3.Row | None:
    """Another (original) photo with the same file content (or, column `pixels`, the same
    pixels)."""
    assert column in ("sha256", "pixels")
    return con.execute(
        f"SELECT id, path, status FROM photos WHERE {column} = ? AND path != ?"
        " AND status != 'duplicate'",
        (digest, path),
    ).fetchone()


def duplicates_of(con, photo_id: int) -> list[sqlite3.Row]:
    return con.execute(
        "SELECT * FROM photos WHERE duplicate_of = ? ORDER BY id", (photo_id,)
    ).fetchall()


def all_paths(con):
    """Every path the library knows (photos, duplicates, missing ones), one at a time."""
    return (r[0] for r in con.execute("SELECT path FROM photos"))


def duplicate_paths(con) -> dict[int, list[str]]:
    """Each photo's other copies (the same file found at other paths), by photo id."""
    out: dict[int, list[str]] = {}
    for photo, path in con.execute(
        "SELECT duplicate_of, path FROM photos WHERE status = 'duplicate' ORDER BY id"
    ):
        out.setdefault(photo, []).append(path)
    return out


def promote_duplicate(con, photo_id: int, dup: sqlite3.Row) -> None:
    """The photo now lives at its duplicate's path (its other copy was deleted): its
    faces and names stay."""
    con.execute("DELETE FROM photos WHERE id = ?", (dup["id"],))
    move_photo(con, photo_id, dup["path"], dup["size"], dup["mtime"])


def has_confirmed_faces(con, photo_id: int) -> bool:
    q = "SELECT 1 FROM faces WHERE photo_id = ? AND confirmed = 1 LIMIT 1"
    return con.execute(q, (photo_id,)).fetchone() is not None


def set_status(con, photo_id: int, status: str) -> None:
    con.execute("UPDATE photos SET status = ? WHERE id = ?", (status, photo_id))


def settle_found(con, photo_id: int) -> None:
    """A photo read fine: 'ok' when it holds a face now, else 'no_face' (faces outside an
    'ok' photo are never stacked)."""
    con.execute(
        "UPDATE photos SET (status, error) = (SELECT CASE WHEN n THEN 'ok' ELSE 'no_face' END,"
        " CASE WHEN n THEN NULL ELSE 'no face found' END FROM"
        " (SELECT EXISTS (SELECT 1 FROM faces WHERE photo_id = ?) AS n)) WHERE id = ?",
        (photo_id, photo_id),
    )


def update_photo(con, photo_id, path, digest, size, mtime, width, height, taken, status, error,
                 pixels) -> None:  # fmt: skip
    """A photo's file read again (its content changed, or it was found at another path)."""
    con.execute(
        "UPDATE photos SET path = ?, sha256 = ?, size = ?, mtime = ?, width = ?, height = ?,"
        " taken = ?, status = ?, error = ?, pixels = ? WHERE id = ?",
        (path, digest, size, mtime, width, height, taken, status, error, pixels, photo_id),
    )


def refile_photo(con, photo_id, path, digest, size, mtime, taken, status="ok",
                 error=None) -> None:  # fmt: skip
    """A photo's file read again with its pixels as recorded (a caption edited) or not read
    (unreadable now): the file's state changes; its pixels, size and faces stay."""
    con.execute(
        "UPDATE photos SET path = ?, sha256 = ?, size = ?, mtime = ?, taken = ?, status = ?,"
        " error = ? WHERE id = ?",
        (path, digest, size, mtime, taken, status, error, photo_id),
    )


# `searched` of a photo whose faces wait for the library's model to read it (a migration
# could not): any scan that finds it readable searches it again
WAITING = float("inf")


def set_searched(con, photo_id: int, smallest: float) -> None:
    """The smallest face a photo was searched for (a lower gate searches it again)."""
    con.execute("UPDATE photos SET searched = ? WHERE id = ?", (smallest, photo_id))


def delete_photo(con, photo_id: int, with_duplicates: bool = False) -> None:
    con.execute("DELETE FROM photos WHERE id = ?", (photo_id,))
    if with_duplicates:
        con.execute("DELETE FROM photos WHERE duplicate_of = ?", (photo_id,))


_MISSING = "SELECT id FROM photos WHERE status = 'missing'"


def missing_photos(con) -> list[sqlite3.Row]:
    """The photos gone from disk that are kept for the names on them, by path."""
    return con.execute(
        "SELECT id, path FROM photos WHERE status = 'missing' ORDER BY path"
    ).fetchall()


def faces_on_missing(con) -> list[sqlite3.Row]:
    """(id, name or NULL, confirmed) of every face on a missing photo."""
    return con.execute(
        "SELECT f.id, pe.name, f.confirmed FROM faces f LEFT JOIN people pe ON pe.id = f.person_id"
        f" WHERE f.photo_id IN ({_MISSING}) ORDER BY f.id"
    ).fetchall()


def delete_missing(con) -> None:
    """The missing photos, their faces and their (equally gone) duplicates."""
    con.execute(f"DELETE FROM photos WHERE duplicate_of IN ({_MISSING})")
    con.execute("DELETE FROM photos WHERE status = 'missing'")


def face_thumbnail_keys(con) -> set[tuple[int, str]]:
    """(face id, the first 16 hex digits of its photo's content, `face_box`) of every
    face: what a face's thumbnail is named by."""
    rows = con.execute("SELECT f.id, substr(COALESCE(p.pixels, p.sha256), 1, 16) FROM faces f"
                       " JOIN photos p ON p.id = f.photo_id")  # fmt: skip
    return {(int(r[0]), r[1]) for r in rows}


def add_duplicate(con, path: str, digest: str, size: int, mtime: float, of: int) -> None:
    con.execute(
        "INSERT INTO photos(path, sha256, size, mtime, status, duplicate_of)"
        " VALUES (?, ?, ?, ?, 'duplicate', ?)",
        (path, digest, size, mtime, of),
    )


def add_photo(con, path, digest, size, mtime, width, height, taken, status, error,
              pixels=None) -> int:  # fmt: skip
    cur = con.execute(
        "INSERT INTO photos(path, sha256, size, mtime, width, height, taken, status, error,"
        " pixels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (path, digest, size, mtime, width, height, taken, status, error, pixels),
    )
    return int(cur.lastrowid)


def count_photos(con) -> int:
    return con.execute("SELECT COUNT(*) FROM photos").fetchone()[0]


def photo_path(con, photo_id: int) -> str | None:
    row = con.execute("SELECT path FROM photos WHERE id = ?", (photo_id,)).fetchone()
    return None if row is None else row[0]


def original_with_hash(con, digest: str) -> int | None:
    row = con.execute(
        "SELECT id FROM photos WHERE sha256 = ? AND status != 'duplicate'", (digest,)
    ).fetchone()
    return None if row is None else int(row[0])


def photos_to_migrate(con) -> list[sqlite3.Row]:
    """The photos a migration has still to read, and the table of those it has read, with
    the named faces each kept and lost (a migration stopped by an older facetrain has none:
    its photos count as none kept or lost)."""
    con.execute("CREATE TABLE IF NOT EXISTS migrated (photo_id INTEGER PRIMARY KEY, "
                "kept INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0)")  # fmt: skip
    if "kept" not in {r[1] for r in con.execute("PRAGMA table_info(migrated)")}:
        for column in ("kept", "lost"):
            con.execute(f"ALTER TABLE migrated ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    return con.execute(
        "SELECT id, path, pixels, width, height FROM photos WHERE status IN ('ok', 'no_face')"
        " AND id NOT IN (SELECT photo_id FROM migrated) ORDER BY id"
    ).fetchall()


def mark_migrated(con, photo_id: int, kept: int, lost: int) -> None:
    con.execute("INSERT INTO migrated VALUES (?, ?, ?)", (photo_id, kept, lost))


def migrated_so_far(con) -> tuple[int, int, int]:
    """The photos a migration has read, in this run and any it was stopped in, and the
    named faces they kept and lost."""
    n, kept, lost = con.execute("SELECT COUNT(*), SUM(kept), SUM(lost) FROM migrated").fetchone()
    return n, kept or 0, lost or 0


def end_migration(con) -> int:
    """The migration's bookkeeping dropped. The faces of photos it could not read (missing,
    or unreadable then) keep their boxes and labels but lose the old model's embedding,
    which no longer compares with the others, and wait (`WAITING`) for a scan to read
    their photo again; the number of confirmed faces waiting."""
    left = "photo_id NOT IN (SELECT photo_id FROM migrated)"
    con.execute(f"UPDATE faces SET embedding = NULL WHERE {left}")
    con.execute("DROP TABLE IF EXISTS migrated")
    con.execute("UPDATE photos SET searched = ? WHERE id IN (SELECT photo_id FROM faces"
                " WHERE embedding IS NULL)", (WAITING,))  # fmt: skip
    q = "SELECT COUNT(*) FROM faces WHERE confirmed = 1 AND embedding IS NULL"
    return con.execute(q).fetchone()[0]


# --- faces ---------------------------------------------------------------------------------


def insert_faces(con, photo_id: int, faces: list[dict]) -> list[int]:
    """The faces of one photo added; their ids."""
    sql = ("INSERT INTO faces(photo_id, x1, y1, x2, y2, landmarks, score, size, sharpness,"
           " usable, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
    return [
        con.execute(sql, (photo_id, *f["box"], json.dumps(f["landmarks"]), f["score"],
                          f["size"], f["sharpness"], int(f["usable"]),
                          to_blob(f["embedding"]))).lastrowid
        for f in faces
    ]  # fmt: skip


_FACES = "SELECT f.*, p.path FROM faces f JOIN photos p ON p.id = f.photo_id WHERE "
FACE_SETS = {
    # unconfirmed usable faces of readable photos: what clustering places
    "free": "f.usable = 1 AND f.hidden = 0 AND f.confirmed = 0 AND p.status = 'ok'",
    # the owner's word: confirmed faces of a person
    "named": "f.confirmed = 1 AND f.person_id IS NOT NULL AND f.hidden = 0",
    # usable faces of a scan not yet in any stack: what a scan places incrementally
    "unplaced": "f.usable = 1 AND f.hidden = 0 AND f.confirmed = 0 AND p.status = 'ok' "
    "AND f.person_id IS NULL",
    # every visible face of every visible stack: where new faces may go
    "stacked": "f.hidden = 0 AND f.person_id IN (SELECT id FROM people WHERE hidden = 0)",
    # what a new face's spacing is measured among: "free" and "named" together, in face
    # order whatever the names (the same faces give the same index: `neighbours.keep`)
    "compared": "(f.usable = 1 AND f.hidden = 0 AND f.confirmed = 0 AND p.status = 'ok') OR "
    "(f.confirmed = 1 AND f.person_id IS NOT NULL AND f.hidden = 0)",
    # every confirmed face of every named, visible person
    "prototypes": "f.confirmed = 1 AND f.hidden = 0 AND f.person_id IN "
    "(SELECT id FROM people WHERE name IS NOT NULL AND hidden = 0)",
}


_CHUNK = 4096  # faces read at a time: 600 MB at a million faces, against 675 at 65,536


@dataclass
class FaceColumns:
    """Of each face of a set, in face order: its id, its photo, its stack (-1: none) and
    whether the owner confirmed it. Arrays, not a row object a face: a million rows, each
    holding its embedding beside the matrix, took more memory than the matrix itself."""

    id: np.ndarray
    photo: np.ndarray
    person: np.ndarray
    confirmed: np.ndarray

    def __len__(self) -> int:
        return len(self.id)

    def __getitem__(self, idx) -> FaceColumns:
        return FaceColumns(self.id[idx], self.photo[idx], self.person[idx], self.confirmed[idx])

    @staticmethod
    def empty() -> FaceColumns:
        none = np.zeros(0, np.int64)
        return FaceColumns(none, none, none, np.zeros(0, bool))


def read_faces(con, which: str) -> tuple[np.ndarray, FaceColumns]:
    """(embeddings as the model gave them, FaceColumns) of one of FACE_SETS, in face order.
    Only what clustering and naming use is read: the whole set is read for each of them, at
    a million faces half the time of every column. Read in chunks into one writable matrix,
    no embedding kept twice."""
    cur = con.cursor()
    cur.row_factory = None  # plain tuples: nothing of a chunk outlives it
    cur.execute(
        "SELECT f.id, f.photo_id, f.person_id, f.confirmed, f.embedding FROM faces f"
        " JOIN photos p ON p.id = f.photo_id WHERE f.embedding IS NOT NULL AND ("
        + FACE_SETS[which]
        + ") ORDER BY f.id"
    )
    flat, columns, size = bytearray(), [], None
    while chunk := cur.fetchmany(_CHUNK):
        ids, photo, person, confirmed, blobs = zip(*chunk)
        size = size or len(blobs[0])
        _same_size(ids, blobs, size)
        flat += b"".join(blobs)
        person = [-1 if p is None else p for p in person]
        columns.append([np.array(c, np.int64) for c in (ids, photo, person, confirmed)])
    if not columns:
        return np.zeros((0, 0), np.float32), FaceColumns.empty()
    ids, photo, person, confirmed = (np.concatenate(c) for c in zip(*columns))
    emb = np.frombuffer(flat, np.float32).reshape(len(ids), -1)
    return emb, FaceColumns(ids, photo, person, confirmed.astype(bool))


def count_faces(con, which: str) -> int:
    """How many faces one of FACE_SETS holds."""
    sql = "SELECT COUNT(*) FROM faces f JOIN photos p ON p.id = f.photo_id WHERE "
    return con.execute(sql + FACE_SETS[which]).fetchone()[0]


def faces_of_person(con, person_id: int) -> tuple[np.ndarray, list[sqlite3.Row]]:
    """A stack's faces that have an embedding (not those waiting for their photo)."""
    rows = con.execute(_FACES + "f.person_id = ? AND f.embedding IS NOT NULL ORDER BY f.id",
                       (person_id,)).fetchall()  # fmt: skip
    return _embedded(rows)


def _same_size(ids, blobs, size: int) -> None:
    """Every embedding `size` bytes, or the first face whose is not named."""
    wrong = next((i for i, b in zip(ids, blobs) if len(b) != size), None)
    if wrong is not None:
        raise LibraryError(f"face {wrong}: its embedding is not the size of the others "
                           "(a damaged library)")  # fmt: skip


def _embedded(rows) -> tuple[np.ndarray, list[sqlite3.Row]]:
    if not rows:
        return np.zeros((0, 0), np.float32), []
    size = len(rows[0]["embedding"])
    _same_size([r["id"] for r in rows], [r["embedding"] for r in rows], size)
    flat = bytearray(size * len(rows))  # one writable matrix, not an array a row stacked
    for i, r in enumerate(rows):
        flat[i * size : (i + 1) * size] = r["embedding"]
    return np.frombuffer(flat, np.float32).reshape(len(rows), -1), rows


def active_adapter(con) -> sqlite3.Row | None:
    """The adapter in use: the newest switched-on one learnt for the library's model (one
    learnt for a model the library has since migrated from is not used)."""
    try:
        row = con.execute("SELECT * FROM adapters WHERE active = 1 ORDER BY id DESC").fetchone()
    except sqlite3.OperationalError:  # opened read-only before the table existed
        return None
    return row if row is not None and row["model_hash"] == get_meta(con, "model_hash") else None


def save_adapter(con, model_hash: str, weights: bytes, report: str, active: bool = True) -> None:
    """A new adapter, switched on (the earlier ones are kept, switched off), or kept off."""
    con.execute(ADAPTERS)
    if active:
        con.execute("UPDATE adapters SET active = 0")
    con.execute("INSERT INTO adapters(model_hash, weights, report, active) VALUES (?, ?, ?, ?)",
                (model_hash, weights, report, int(active)))  # fmt: skip


def kept_adapter(con, digest: str) -> sqlite3.Row | None:
    """The newest adapter, if it is kept off and was measured on faces of this digest
    (`personalize.digest`) for the library's model: switching it on needs no new work."""
    con.execute(ADAPTERS)
    row = con.execute("SELECT * FROM adapters ORDER BY id DESC").fetchone()
    if row is None or row["active"] or row["model_hash"] != (get_meta(con, "model_hash") or ""):
        return None
    return row if json.loads(row["report"]).get("digest") == digest else None


def switch_on_adapter(con, adapter_id: int) -> None:
    """This adapter in use, every other switched off (kept)."""
    con.execute("UPDATE adapters SET active = (id = ?)", (adapter_id,))


def adapters_off(con) -> int:
    """Every adapter switched off (kept); how many were on."""
    con.execute(ADAPTERS)
    return con.execute("UPDATE adapters SET active = 0 WHERE active = 1").rowcount


def face_ids(con, person_id: int, limit: int | None = None) -> list[int]:
    """A person's faces, confirmed first (the first `limit`)."""
    sql = "SELECT id FROM faces WHERE person_id = ? ORDER BY confirmed DESC, id"
    params: tuple = (person_id,)
    if limit is not None:
        sql, params = sql + " LIMIT ?", (person_id, limit)
    return [r[0] for r in con.execute(sql, params)]


def face_listing(con, person_id: int) -> list[sqlite3.Row]:
    """A person's faces with their photo path and box, in face order."""
    return con.execute(
        "SELECT f.id, p.path, f.x1, f.y1, f.x2, f.y2, f.confirmed FROM faces f"
        " JOIN photos p ON p.id = f.photo_id WHERE f.person_id = ? ORDER BY f.id",
        (person_id,),
    ).fetchall()


def is_row_id(n: int) -> bool:
    """Whether n can be an id at all (SQLite's ids are 64-bit: a larger one is no face,
    not an overflow)."""
    return 0 <= n < 2**63


def face_box(con, face_id: int) -> sqlite3.Row | None:
    """A face's photo id, box and its photo's content: its pixel digest (its file's hash
    in a library made before those)."""
    if not is_row_id(face_id):
        return None
    return con.execute(
        "SELECT f.photo_id, f.x1, f.y1, f.x2, f.y2, COALESCE(p.pixels, p.sha256) AS content"
        " FROM faces f "
        "JOIN photos p ON p.id = f.photo_id WHERE f.id = ?",
        (face_id,),
    ).fetchone()


def face_person(con, face_id: int) -> tuple[bool, int | None]:
    """(whether the face exists, its person)."""
    if not is_row_id(face_id):
        return False, None
    row = con.execute("SELECT person_id FROM faces WHERE id = ?", (face_id,)).fetchone()
    return (False, None) if row is None else (True, row[0])


def faces_of_photo(con, photo_id: int, usable_only: bool = False) -> list[sqlite3.Row]:
    return con.execute(
        "SELECT id, x1, y1, x2, y2, person_id, confirmed, hidden, landmarks, score, size,"
        " usable, embedding FROM faces"
        " WHERE photo_id = ?" + (" AND usable = 1" if usable_only else ""),
        (photo_id,),
    ).fetchall()


def delete_faces(con, face_ids: list[int]) -> None:
    con.executemany("DELETE FROM faces WHERE id = ?", [(f,) for f in face_ids])


def place_face(con, face_id: int, box: list[float], landmarks: list) -> None:
    """A face's recorded place changed (its photo turned), nothing else."""
    con.execute("UPDATE faces SET x1 = ?, y1 = ?, x2 = ?, y2 = ?, landmarks = ? WHERE id = ?",
                (*box, json.dumps(landmarks), face_id))  # fmt: skip


def renumber_face(con, face_id: int, to: int) -> None:
    """A face given another (free) id: a face found again takes the id of the face it is,
    so the curating log's snapshots and the thumbnails still name it."""
    con.execute("UPDATE faces SET id = ? WHERE id = ?", (to, face_id))


def set_face(con, face_id: int, person_id, confirmed: int, hidden: int) -> None:
    con.execute(
        "UPDATE faces SET person_id = ?, confirmed = ?, hidden = ? WHERE id = ?",
        (person_id, confirmed, hidden, face_id),
    )


def assign(con, pairs: list[tuple[int | None, int]], confirmed: int | None = None) -> None:
    """(person, face) pairs: each face to its person (and its confirmed flag, if given)."""
    if confirmed is None:
        con.executemany("UPDATE faces SET person_id = ? WHERE id = ?", pairs)
    else:
        con.executemany(
            "UPDATE faces SET person_id = ?, confirmed = ? WHERE id = ?",
            [(p, confirmed, f) for p, f in pairs],
        )


def photos_shared(con, faces_a: list[int], faces_b: list[int]) -> int:
    """How many photos hold a face of both lists (two faces of a photo: two people)."""
    return con.execute(
        f"SELECT COUNT(*) FROM faces x JOIN faces y ON x.photo_id = y.photo_id"
        f" WHERE x.id IN ({_q(faces_a)}) AND y.id IN ({_q(faces_b)})",
        faces_a + faces_b,
    ).fetchone()[0]


def photos_of_faces(con, face_ids: list[int]) -> list[int]:
    """The distinct photos these faces are on."""
    sql = f"SELECT DISTINCT photo_id FROM faces WHERE id IN ({_q(face_ids)})"
    return [r[0] for r in con.execute(sql, list(face_ids))]


def face_quality(con, person_id: int | None = None) -> list[sqlite3.Row]:
    """What a face's quality is judged from (detector score, size, sharpness, the box
    against its photo's edges) for every face in a stack (or one stack's)."""
    where = "f.person_id = ?" if person_id is not None else "f.person_id IS NOT NULL"
    return con.execute(
        "SELECT f.id, f.person_id, f.confirmed, f.score, f.size, f.sharpness, f.x1, f.y1,"
        " f.x2, f.y2, p.width, p.height FROM faces f JOIN photos p ON p.id = f.photo_id"
        f" WHERE {where} AND f.hidden = 0 ORDER BY f.id",
        () if person_id is None else (person_id,),
    ).fetchall()


def confirmed_ids(con, person_id: int) -> list[int]:
    q = "SELECT id FROM faces WHERE person_id = ? AND confirmed = 1 ORDER BY id"
    return [r[0] for r in con.execute(q, (person_id,))]


def photos_with(con, person_ids: list[int], who: bool = False) -> list[dict]:
    """The photos on which each of these stacks has a face: id, path, taken (EXIF, as
    written), mtime, status; with `who`, also everyone on it (`people`: the stacks' id,
    name, hidden, in face order). In id order."""
    ids = sorted(set(person_ids))
    on = (f"SELECT photo_id FROM faces WHERE person_id IN ({_q(ids)}) GROUP BY photo_id"
          " HAVING COUNT(DISTINCT person_id) = ?")  # fmt: skip
    args = [*ids, len(ids)]
    rows = {r["id"]: dict(r) | {"people": []} for r in con.execute(
        f"SELECT id, path, taken, mtime, status FROM photos WHERE id IN ({on}) ORDER BY id", args
    )}  # fmt: skip
    if who:
        for photo, pid, name, hidden in con.execute(
            "SELECT f.photo_id, pe.id, pe.name, pe.hidden FROM faces f JOIN people pe"
            f" ON pe.id = f.person_id WHERE f.photo_id IN ({on}) ORDER BY f.id", args,
        ):  # fmt: skip
            people = rows[photo]["people"]
            if all(p["id"] != pid for p in people):
                people.append({"id": pid, "name": name, "hidden": bool(hidden)})
    return list(rows.values())


def companions(con, person_id: int, limit: int) -> list[dict]:
    """The visible stacks that share most photos with this one (at most `limit`): id,
    name, photos (how many they share), most first."""
    return [dict(r) for r in con.execute(
        "SELECT pe.id, pe.name, COUNT(DISTINCT f.photo_id) AS photos FROM faces f"
        " JOIN people pe ON pe.id = f.person_id WHERE pe.hidden = 0 AND pe.id != ?"
        " AND f.photo_id IN (SELECT photo_id FROM faces WHERE person_id = ?)"
        " GROUP BY pe.id ORDER BY photos DESC, pe.id LIMIT ?", (person_id, person_id, limit),
    )]  # fmt: skip


def unassign_guesses(con) -> None:
    """Every unconfirmed face leaves its stack (the stacks stay: the caller gives faces back
    to some and then drops the empty ones, `drop_empty_stacks`)."""
    con.execute("UPDATE faces SET person_id = NULL WHERE confirmed = 0")


def unnamed_stacks(con) -> set[int]:
    """The visible stacks no one has named yet."""
    return {r[0] for r in con.execute("SELECT id FROM people WHERE name IS NULL AND hidden = 0")}


def drop_empty_stacks(con) -> None:
    con.execute(
        "DELETE FROM people WHERE name IS NULL AND hidden = 0 AND id NOT IN "
        "(SELECT person_id FROM faces WHERE person_id IS NOT NULL)"
    )


def regate(con, min_size: float, min_score: float, min_sharpness: float) -> int:
    """Every face judged again by a quality gate from its recorded size, score and
    sharpness; an unconfirmed face no longer usable leaves its (visible) stack (stacks left
    empty, unnamed, go). The number of faces whose judgement changed."""
    rule = "(size >= ? AND score >= ? AND sharpness >= ?)"
    gate = (min_size, min_score, min_sharpness)
    n = con.execute(f"UPDATE faces SET usable = {rule} WHERE usable != {rule}", gate + gate)
    con.execute(  # a hidden stack keeps its faces: showing it again shows them all
        "UPDATE faces SET person_id = NULL WHERE usable = 0 AND confirmed = 0 AND hidden = 0"
    )
    drop_empty_stacks(con)
    return n.rowcount


def count_stacks(con) -> int:
    return con.execute(
        "SELECT COUNT(DISTINCT person_id) FROM faces WHERE person_id IS NOT NULL"
    ).fetchone()[0]


# --- people --------------------------------------------------------------------------------


def people(con, only: int | None = None) -> list[dict]:
    """Stacks with their face and photo counts, largest first; `only`: that stack alone
    (its page asks for one row, not a scan of every person's faces)."""
    where, args = ("WHERE pe.id = ?", (only,)) if only is not None else ("", ())
    rows = con.execute(
        "SELECT pe.id, pe.name, pe.hidden, COUNT(f.id) AS faces,"
        " COUNT(DISTINCT f.photo_id) AS photos, SUM(f.confirmed) AS confirmed"
        f" FROM people pe JOIN faces f ON f.person_id = pe.id {where}"
        " GROUP BY pe.id ORDER BY pe.hidden, faces DESC, pe.id",
        args,
    ).fetchall()
    return [dict(r) for r in rows]


def person_named(con, name: str, other_than: int | None = None) -> int | None:
    row = con.execute(
        "SELECT id FROM people WHERE name = ? AND id != ?", (name, -1 if other_than is None
                                                              else other_than)
    ).fetchone()  # fmt: skip
    return None if row is None else int(row[0])


def people_by_id(con, person_ids) -> dict[int, dict]:
    """These stacks' id, name and hidden, by id."""
    ids = sorted({p for p in person_ids if p is not None})
    rows = con.execute(f"SELECT id, name, hidden FROM people WHERE id IN ({_q(ids)})", ids)
    return {r["id"]: {"id": r["id"], "name": r["name"], "hidden": bool(r["hidden"])} for r in rows}


def person_exists(con, person_id: int) -> bool:
    return con.execute("SELECT 1 FROM people WHERE id = ?", (person_id,)).fetchone() is not None


def names(con) -> dict[int, str]:
    return {r[0]: r[1] for r in con.execute("SELECT id, name FROM people WHERE name IS NOT NULL")}


def new_person(con) -> int:
    return int(con.execute("INSERT INTO people(name) VALUES (NULL)").lastrowid)


def name_person(con, person_id: int, name: str) -> None:
    """Name a person; every face of theirs is the owner's word from now on."""
    con.execute("UPDATE people SET name = ? WHERE id = ?", (name, person_id))
    con.execute("UPDATE faces SET confirmed = 1 WHERE person_id = ?", (person_id,))


def merge_people(con, into: int, other: int) -> None:
    """`other`'s faces become `into`'s, confirmed; `into` keeps its name, or takes
    `other`'s when it had none (merging Mom into an unnamed stack leaves a stack of Mom)."""
    con.execute(
        "UPDATE faces SET person_id = ?, confirmed = 1 WHERE person_id IN (?, ?)",
        (into, into, other),
    )
    con.execute("UPDATE OR IGNORE rejections SET person_id = ? WHERE person_id = ?", (into, other))
    con.execute("DELETE FROM rejections WHERE person_id = ? AND face_id IN "  # now theirs
                "(SELECT id FROM faces WHERE person_id = ?)", (into, into))  # fmt: skip
    (name,) = con.execute("SELECT name FROM people WHERE id = ?", (other,)).fetchone()
    con.execute("DELETE FROM people WHERE id = ?", (other,))
    con.execute("UPDATE people SET name = ? WHERE id = ? AND name IS NULL", (name, into))


def set_hidden(con, person_id: int, hidden: bool) -> None:
    """A person and their faces hidden (left out of stacks and recognition) or shown."""
    con.execute("UPDATE people SET hidden = ? WHERE id = ?", (int(hidden), person_id))
    con.execute("UPDATE faces SET hidden = ? WHERE person_id = ?", (int(hidden), person_id))


def hidden_as(con, person_id: int, hidden: bool) -> bool:
    """The person and every face of theirs are hidden (or shown) already."""
    h = int(hidden)
    person = con.execute("SELECT hidden FROM people WHERE id = ?", (person_id,)).fetchone()
    other = con.execute("SELECT 1 FROM faces WHERE person_id = ? AND hidden != ? LIMIT 1",
                        (person_id, h)).fetchone()  # fmt: skip
    return person is not None and person[0] == h and other is None


def delete_person(con, person_id: int) -> None:
    con.execute("DELETE FROM people WHERE id = ?", (person_id,))


def named_photos(con, include_unnamed: bool) -> list[sqlite3.Row]:
    """(person id, name, photo id, path) of every visible person's photos."""
    return con.execute(
        "SELECT DISTINCT pe.id, pe.name, p.id AS photo, p.path FROM faces f"
        " JOIN people pe ON pe.id = f.person_id JOIN photos p ON p.id = f.photo_id"
        " WHERE pe.hidden = 0 AND f.hidden = 0 AND (pe.name IS NOT NULL OR ?)"
        " ORDER BY pe.id, p.id",
        (int(include_unnamed),),
    ).fetchall()


def named_faces(con) -> list[sqlite3.Row]:
    """The owner's confirmed faces of named people, with their photo (path, size) and box,
    photo by photo. A hidden person's faces are left out, as `named_photos` leaves them."""
    return con.execute(
        "SELECT p.id AS photo, p.path, p.width, p.height, f.x1, f.y1, f.x2, f.y2, pe.name"
        " FROM faces f JOIN people pe ON pe.id = f.person_id JOIN photos p ON p.id = f.photo_id"
        " WHERE f.confirmed = 1 AND pe.name IS NOT NULL AND p.status = 'ok'"
        " AND pe.hidden = 0 AND f.hidden = 0 AND p.width > 0 AND p.height > 0 ORDER BY p.id, f.x1"
    ).fetchall()


# --- rejections ----------------------------------------------------------------------------


def rejections(con) -> set[tuple[int, int]]:
    return {(r[0], r[1]) for r in con.execute("SELECT face_id, person_id FROM rejections")}


def rejections_of(con, face_id: int) -> list[int]:
    return [r[0] for r in con.execute(
        "SELECT person_id FROM rejections WHERE face_id = ?", (face_id,))]  # fmt: skip


def reject(con, face_id: int, person_ids: list[int]) -> None:
    con.executemany(
        "INSERT OR IGNORE INTO rejections VALUES (?, ?)", [(face_id, p) for p in person_ids]
    )


def unreject(con, pairs: list[tuple[int, int]]) -> None:
    con.executemany("DELETE FROM rejections WHERE face_id = ? AND person_id = ?", pairs)


# --- the curating log ----------------------------------------------------------------------


def snapshot(con, face_ids: list[int], people_ids: list[int]) -> dict:
    """The face and people rows as they are, for an action's undo."""
    faces = con.execute(
        f"SELECT id, person_id, confirmed, hidden FROM faces WHERE id IN ({_q(face_ids)})",
        list(face_ids),
    ).fetchall()
    ppl = con.execute(
        f"SELECT id, name, hidden FROM people WHERE id IN ({_q(people_ids)})", list(people_ids)
    ).fetchall()
    rejected = con.execute(
        f"SELECT face_id, person_id FROM rejections WHERE person_id IN ({_q(people_ids)})",
        list(people_ids),
    ).fetchall()
    return {"faces": [list(r) for r in faces], "people": [list(r) for r in ppl],
            "rejected": [list(r) for r in rejected]}  # fmt: skip


def log_action(con, kind: str, description: str, undo: dict) -> None:
    con.execute(
        "INSERT INTO actions(kind, description, undo) VALUES (?, ?, ?)",
        (kind, description, json.dumps(undo)),
    )


def last_action(con) -> sqlite3.Row | None:
    return con.execute(
        "SELECT id, description, undo FROM actions WHERE undone = 0 ORDER BY id DESC LIMIT 1"
    ).fetchone()


def revert(con, action_id: int, undo: dict) -> None:
    """Put back the rows an action's undo record holds, and mark it undone."""
    people = [p for p, _, _ in undo["people"]]  # names cleared first: one may have moved
    con.execute(f"UPDATE people SET name = NULL WHERE id IN ({_q(people)})", people)
    for pid, nm, hidden in undo["people"]:
        con.execute(
            "INSERT INTO people(id, name, hidden) VALUES (?, ?, ?) ON CONFLICT(id)"
            " DO UPDATE SET name = excluded.name, hidden = excluded.hidden",
            (pid, nm, hidden),
        )
    con.executemany(
        "UPDATE faces SET person_id = ?, confirmed = ?, hidden = ? WHERE id = ?",
        [(p, c, h, f) for f, p, c, h in undo["faces"]],
    )
    unreject(con, [tuple(r) for r in undo["rejections"]])
    if "rejected" in undo:  # the people's rejections as they were (a merge moves them)
        people = [p for p, _, _ in undo["people"]]
        con.execute(f"DELETE FROM rejections WHERE person_id IN ({_q(people)})", people)
        # only faces still here: a photo removed or forgotten since took its faces with it
        con.executemany("INSERT OR IGNORE INTO rejections(face_id, person_id) SELECT ?, ?"
                        " WHERE EXISTS (SELECT 1 FROM faces WHERE id = ?)",
                        [(f, p, f) for f, p in undo["rejected"]])  # fmt: skip
    for pid in undo["created"]:
        delete_person(con, pid)
    con.execute("UPDATE actions SET undone = 1 WHERE id = ?", (action_id,))
