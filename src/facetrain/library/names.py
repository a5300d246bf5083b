"""A person's name as the library keeps it: one normal form, so that a name typed,
imported or stored two ways is one person, and the names it refuses."""

from __future__ import annotations

import re
import unicodedata

from facetrain.open_set import UNKNOWN
from facetrain.progress import shown

MAX_NAME = 200  # a person's name: the folder `export` makes for them stays a legal file name


def clean_name(name: str) -> str:
    """A name as the library keeps it and looks it up: in Unicode's NFC, so that a name
    typed or imported two ways — é as one character or as e and its accent, a Hangul
    syllable or its letters, as a Mac's file names keep them — is one person; trimmed,
    and a run of spaces inside it one space."""
    return re.sub(" {2,}", " ", unicodedata.normalize("NFC", name).strip())


def name_problem(name: str) -> str | None:
    """Why a person's name (stripped) cannot be taken, or None: it must be one line of
    printable text of at most MAX_NAME characters, not digits alone (it would read as a
    stack id), and not `unknown`, the answer for a face of no named person (their faces and
    a stranger's would be one answer, and imports and measurements take it for a stranger)."""
    if not name:
        return "a name cannot be empty"
    if not name.isprintable() or len(name) > MAX_NAME:
        return (f"a name is one line of printable text, at most {MAX_NAME} characters: "
                f"{shown(name)[:80]!r} is not")  # fmt: skip
    if name.isdigit():
        return f"a name cannot be only digits ({name!r} reads as a stack id): add a letter"
    if name.casefold() == UNKNOWN:
        return (f"a name cannot be {name!r}: {UNKNOWN!r} is the answer for a face of no named "
                "person (to set a stack aside, hide it)")  # fmt: skip
    return None
