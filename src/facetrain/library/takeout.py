"""Names from Google Photos: the JSON Google Takeout writes beside each photo lists the
people the owner named on it (`"people": [{"name": ...}]`), with no place for their faces.

A photo's JSON is found from the photo's name, as Takeout names it: `IMG_1.jpg.json` in
older exports, `IMG_1.jpg.supplemental-metadata.json` since 2024, both cut to 46
characters before the `.json`, and a second photo of one name (`IMG_1(1).jpg`) numbered
after the cut (`IMG_1.jpg(1).json`). A photo Google saved edited (`IMG_1-edited.jpg`) has
its original's JSON. Where none of these exists, the JSON whose `title` is the photo's
name is taken.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from facetrain import foreign

MAX_BYTES = 1 << 20  # a sidecar is about a kilobyte
_CUT = 46  # characters Takeout keeps of a sidecar's name before `(n)` and `.json`
_NUMBERED = re.compile(r"^(.*)\((\d+)\)(\.[^.]*)?$")


def sidecar_names(photo: str) -> list[str]:
    """The names Takeout may have given a photo's JSON, most likely first."""
    m = _NUMBERED.match(photo)  # `(38)` may also be the owner's own, as in `Trip (38).jpg`
    ways = [(photo, "")] + ([(m.group(1) + (m.group(3) or ""), f"({m.group(2)})")] if m else [])
    out = []
    for base, number in ways:
        stem, ext = os.path.splitext(base)
        for b in [base] + ([stem[: -len("-edited")] + ext] if stem.endswith("-edited") else []):
            out += [(b + ".supplemental-metadata")[:_CUT] + number + ".json",
                    b[:_CUT] + number + ".json"]  # fmt: skip
    return list(dict.fromkeys(out))


def people(path: str | os.PathLike) -> tuple[str | None, list[str]]:
    """(title, the names of the people on it) of one Takeout JSON; ValueError for a file
    that is not one."""
    data = Path(path).read_bytes()[: MAX_BYTES + 1]
    if len(data) > MAX_BYTES:
        raise ValueError("not a Google Takeout sidecar (over 1 MB)")
    meta = foreign.loads(data)
    if not isinstance(meta, dict):
        raise ValueError("not a Google Takeout sidecar (no object)")
    found = meta.get("people") or []
    names = [p.get("name") for p in found if isinstance(p, dict)] if isinstance(found, list) else []
    title = meta.get("title")
    return (title if isinstance(title, str) else None), [n for n in names if isinstance(n, str)]


def names_in(folder: str, photos: list[str], problems: dict) -> dict[str, list[str]]:
    """{photo: the people named on it} for the photos (file names) of one folder that have
    a Takeout JSON; JSON that cannot be read goes into `problems`."""
    try:
        jsons = {e.name for e in os.scandir(folder) if e.name.endswith(".json") and e.is_file()}
    except OSError:
        return {}
    out, titles = {}, None
    for photo in photos:
        side = next((n for n in sidecar_names(photo) if n in jsons), None)
        if side is None:
            titles = _titles(folder, jsons) if titles is None else titles
            side = titles.get(photo)
        if side is None:
            continue
        try:
            names = people(os.path.join(folder, side))[1]
        except (OSError, ValueError) as e:
            problems[os.path.join(folder, side)] = str(e)
            continue
        if names:
            out[photo] = list(dict.fromkeys(names))
    return out


def _titles(folder: str, jsons: set[str]) -> dict[str, str]:
    """{title: JSON file name} of a folder's Takeout JSON (read once, when a photo's own
    name found none)."""
    out = {}
    for name in sorted(jsons):
        try:
            title = people(os.path.join(folder, name))[0]
        except (OSError, ValueError):
            continue  # not every JSON is a sidecar (an album's metadata.json); said if used
        if title:
            out.setdefault(title, name)
    return out
