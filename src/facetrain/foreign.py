"""JSON and XML that came from elsewhere (a model file's record, a spec, a photo's
sidecar, another program's XMP): read so that whatever they hold ends as a ValueError
that says why, never as a traceback, a hang or an entity expanded a billion times."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path


def loads(data: str | bytes) -> object:
    """`json.loads`, its failures one ValueError: not UTF-8, not JSON, or nested so deep
    (arrays in arrays, thousands deep) that the parser runs out of stack."""
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    except RecursionError:
        raise ValueError("nested too deep to be read") from None


def read_json(path: Path) -> tuple[object, str]:
    """A file's JSON, or None and why it cannot be read (missing, unreadable, not JSON):
    for a caller that goes on without it (a page that shows the rest, settings made anew)."""
    try:
        return loads(path.read_bytes()), ""
    except (OSError, ValueError) as e:
        return None, f"{path} cannot be read: {e}"


def read_table(path: Path, what: str = "table") -> tuple[dict | None, str]:
    """A file's JSON table (object), or None and why not: `read_json`'s reason, or that
    the file holds no `what`."""
    got, why = read_json(path)
    if isinstance(got, dict):
        return got, ""
    return None, why or f"{path} holds no {what}"


def xml_root(data: bytes, what: str, limit: int) -> ET.Element:
    """The root element of an XML document of at most `limit` bytes with no DOCTYPE (no
    entity to expand); ValueError naming `what` it is not, otherwise."""
    if len(data) > limit or b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ValueError(f"not {what} facetrain reads (too large, or a DOCTYPE)")
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise ValueError(f"broken XML ({e})") from None
