"""The alignment record of an aligned-faces folder (`align_config.json`): how its faces were
cropped, as `align`, `rewarp` or `recordio` wrote it, and what `pack`, training and every
model trained on those faces read back. A record that is damaged or edited into something
no aligner can follow is refused where it is read, naming the file: trained on, it would
have given a model that finds "no face" in every photo."""

from __future__ import annotations

import json
import math
from pathlib import Path

from facetrain.data.listing import DatasetError
from facetrain.run_folder import ALIGN_RECORD

MODES = ("similarity", "box")  # five-point similarity warp; FaceNet's box + margin crop


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _points(v) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 5
        and all(isinstance(p, list) and len(p) == 2 and all(map(_number, p)) for p in v)
    )


# Each field a record may hold: what it must be, and that said in words. A field left out
# takes the aligner's default.
FIELDS = {
    "mode": (lambda v: v in MODES, "'similarity' or 'box'"),
    "size": (lambda v: v is None or (_number(v) and v == int(v) and 16 <= v <= 4096),
             "a whole number of pixels from 16 to 4096"),
    "margin": (lambda v: _number(v) and v >= 0, "pixels around the box, a number ≥ 0"),
    "template": (lambda v: v is None or _points(v), "five [x, y] points"),
    "min_face": (lambda v: _number(v) and v >= 12, "at least 12 pixels"),
    "thresholds": (lambda v: isinstance(v, list) and len(v) == 3
                   and all(_number(t) and 0 < t < 1 for t in v), "three numbers in (0, 1)"),
    "factor": (lambda v: _number(v) and 0.1 < v < 1, "a number in (0.1, 1)"),
}  # fmt: skip


def alignment_problem(record: object) -> str | None:
    """Why `record` is no alignment a face can be cropped by (None: it is one)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, (ok, wanted) in FIELDS.items():
        if key in record and not ok(record[key]):
            return f"{key} {record[key]!r}: {wanted}"
    return None


def read_alignment(folder: str | Path) -> dict | None:
    """FOLDER's alignment record (None: it has none); DatasetError naming the file when it
    cannot be read or followed."""
    path = Path(folder) / ALIGN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DatasetError(f"{path}: not an alignment record facetrain can read ({e})") from None
    why = alignment_problem(record)
    if why:
        raise DatasetError(f"{path}: not an alignment record facetrain can follow ({why})")
    return record
