"""Names from Picasa's face tags: the `.picasa.ini` (or `picasa.ini`) Picasa 3 left in
every folder it knew, where most of its users' names still are (writing them into the
photos as XMP was an option, off by default).

A photo's section lists its faces as `faces=rect64(HEX),CONTACT;...`: 16 hex digits, four
16-bit fractions of the photo (left, top, right, bottom), and the id of the person, whose
name is in the same file's `[Contacts2]` section (`CONTACT=Name;email;`) or in Picasa's
own `contacts.xml`. A contact with no name (`ffffffffffffffff`: nobody) is a face left
unnamed. Which way up Picasa measured a photo that is shown turned is not documented, so
the library tries each frame it may be (`frames`) and takes the one that puts the
regions on its faces (`curate.turned_to_fit`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from facetrain import foreign
from facetrain.library.turns import region

INI_NAMES = (".picasa.ini", "picasa.ini")  # Picasa 3 on Windows, and on macOS / older
MAX_BYTES = 8 << 20  # a folder's ini is some kB a hundred photos; anything larger is not read
_RECT = re.compile(r"rect64\(([0-9a-fA-F]{1,16})\)\s*,\s*([0-9a-fA-F]+)")


def ini_of(folder: str | os.PathLike) -> Path | None:
    """A folder's Picasa ini, if it has one."""
    for name in INI_NAMES:
        p = Path(folder, name)
        if p.is_file():
            return p
    return None


def area(hex64: str) -> tuple[float, float, float, float]:
    """A `rect64` as (cx, cy, w, h), normalised: its four 16-bit fractions of the photo
    are left, top, right, bottom (leading zeros are left out in the file)."""
    v = hex64.zfill(16)
    return region([int(v[i : i + 4], 16) / 65535 for i in range(0, 16, 4)])


def sections(text: str) -> dict[str, dict[str, str]]:
    """An ini's sections as {section: {key: value}}; Picasa writes a plain ini, but
    lines no ini reader accepts (a name with `%`, a section twice) are read as they are."""
    out: dict[str, dict[str, str]] = {}
    current = out.setdefault("", {})
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = out.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith((";", "#")):
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
    return out


def read_ini(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """`sections` of an ini file: UTF-8 as Picasa 3.9 writes it, else the Windows code page
    older versions used. ValueError for a file too large to be one."""
    data = Path(path).read_bytes()[: MAX_BYTES + 1]
    if len(data) > MAX_BYTES or b"\0" in data:
        raise ValueError("not a Picasa ini (too large, or binary)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return sections(text)


def contacts(ini: dict[str, dict[str, str]]) -> dict[str, str]:
    """{contact id: name} of an ini's `[Contacts2]` section."""
    out = {}
    for cid, value in ini.get("Contacts2", {}).items():
        name = value.split(";", 1)[0].strip()
        if name:
            out[cid.lower()] = name
    return out


def contacts_xml(path: str | os.PathLike) -> dict[str, str]:
    """{contact id: name} of Picasa's `contacts.xml` (`<contact id=".." name=".."/>`).
    ValueError for a file that is not one."""
    root = foreign.xml_root(Path(path).read_bytes()[: MAX_BYTES + 1], "Picasa's contacts.xml",
                            MAX_BYTES)  # fmt: skip
    return {
        c.get("id", "").lower(): c.get("name", "").strip()
        for c in root.iter("contact")
        if c.get("id") and (c.get("name") or "").strip()
    }


def named_faces(ini: dict[str, dict[str, str]], names: dict[str, str]) -> dict[str, dict]:
    """{photo file name: {"regions": [(name, (cx, cy, w, h))], "unnamed": n, "rotate": k}}
    for each photo of the ini with faces: `names` gives each contact its name (a contact
    without one counts as unnamed); `rotate` is the quarter turns clockwise Picasa showed
    the photo by without changing its file (`rotate=rotate(k)`)."""
    out = {}
    for photo, keys in ini.items():
        found = _RECT.findall(keys.get("faces", ""))
        if not photo or not found:
            continue
        regions = [(names[c.lower()], area(h)) for h, c in found if c.lower() in names]
        turn = re.fullmatch(r"rotate\(([0-3])\)", keys.get("rotate", ""))
        out[photo] = {"regions": regions, "unnamed": len(found) - len(regions),
                      "rotate": int(turn.group(1)) if turn else 0}  # fmt: skip
    return out


def frames(orientation: int, rotate: int) -> list[int]:
    """The frames Picasa's tags of a photo may be measured in, as the EXIF orientations
    that bring each to the photo as shown: as shown (1), as stored (its own), and as
    Picasa showed it turned by `rotate` quarters clockwise."""
    return list(dict.fromkeys([1, orientation, _UNDO_CLOCKWISE[rotate]]))


_UNDO_CLOCKWISE = {0: 1, 1: 8, 2: 3, 3: 6}  # k quarters clockwise, turned back
