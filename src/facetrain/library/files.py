"""The files that belong to a library, named in one place.

A library is its SQLite database `DB`, SQLite's write-ahead log and shared memory beside it
(`DB-wal`, `DB-shm`), the lock a process holds while it changes the library (`DB.lock`),
and the web page's thumbnail cache (`DB.thumbs/`). Whatever creates, removes or must not
mistake one of them for a photo asks here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LibraryFiles:
    db: Path

    @classmethod
    def of(cls, db: str | os.PathLike) -> LibraryFiles:
        return cls(Path(db))

    def _beside(self, suffix: str) -> Path:
        return self.db.with_name(self.db.name + suffix)

    @property
    def wal(self) -> Path:
        return self._beside("-wal")

    @property
    def shm(self) -> Path:
        return self._beside("-shm")

    @property
    def lock(self) -> Path:
        return self._beside(".lock")

    @property
    def thumbs(self) -> Path:
        return self._beside(".thumbs")

    def files(self) -> list[Path]:
        """The database and the files beside it (not the thumbnail folder)."""
        return [self.db, self.wal, self.shm, self.lock]

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether path is one of the library's own files or inside its thumbnail cache."""
        p = Path(os.path.abspath(path))
        mine = [Path(os.path.abspath(f)) for f in self.files()]
        thumbs = Path(os.path.abspath(self.thumbs))
        return p in mine or p == thumbs or thumbs in p.parents
