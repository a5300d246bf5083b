"""Decode MS-Celeb-1M TSV files into one folder per identity, streaming and resumable.

Two published layouts, detected per line by the column count:
- 7 columns (the FaceImageCroppedWithAlignment / Faces-Aligned files): Freebase MID,
  image search rank, image URL, page URL, face id, face rectangle, base64 face image.
- 6 columns (the older files FaceNet's decoder read): MID, name, rank, image URL, page
  URL, base64 image.

Images are written as the bytes found (no re-encoding), named `<rank>-<faceid>.<ext>` or
`<rank>.<ext>` under `OUT/<MID>/`. Progress is a byte offset per TSV in
`OUT/msceleb_progress.json`, committed after the images before it exist, so a killed run
continues where it stopped. Bad rows go to `OUT/msceleb_errors.csv` and are skipped.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import os
import re
from collections import Counter
from pathlib import Path

from facetrain import atomic
from facetrain.data.images import encoded_ext

PROGRESS_FILE = "msceleb_progress.json"
ERRORS_FILE = "msceleb_errors.csv"
NAMES_FILE = "msceleb_names.tsv"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe(part: str) -> str:
    return _SAFE.sub("_", part.strip())[:120] or "_"


def parse_line(line: str) -> tuple[str, str, str, str]:
    """(mid, file stem, name or '', base64 payload); ValueError with a reason if malformed."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) == 7:
        mid, rank, _url, _page, face_id, _rect, data = fields
        stem, name = f"{_safe(rank)}-{_safe(face_id)}", ""
    elif len(fields) == 6:
        mid, name, rank, _url, _page, data = fields
        stem = _safe(rank)
    else:
        raise ValueError(f"{len(fields)} columns (expected 6 or 7)")
    if not mid.strip():
        raise ValueError("empty MID")
    return _safe(mid), stem, name.strip(), data


def decode_image(data: str) -> tuple[bytes, str]:
    """Base64 text → (image bytes, extension); ValueError if not a valid image."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None
    return raw, encoded_ext(raw)


def decode_tsv(tsvs: list[str], out: str | os.PathLike, *, commit_every: int = 500) -> Counter:
    """Decode every TSV into OUT; returns counts (written, bad_row, skipped_done...)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prog_path = out / PROGRESS_FILE
    progress = json.loads(prog_path.read_text()) if prog_path.exists() else {}
    counts: Counter = Counter()
    new_err = not (out / ERRORS_FILE).exists()
    with (
        open(out / ERRORS_FILE, "a", newline="", encoding="utf-8") as ef,
        open(out / NAMES_FILE, "a", encoding="utf-8") as nf,
    ):
        errors = csv.writer(ef)
        if new_err:
            errors.writerow(["file", "line", "reason"])
        for tsv in tsvs:
            key = os.path.abspath(tsv)
            size = os.path.getsize(tsv)
            state = progress.get(key, {"offset": 0, "line": 0})
            if state["offset"] >= size:
                counts["files_already_done"] += 1
                continue
            seen_names: set[str] = set()
            with open(tsv, "rb") as f:
                f.seek(state["offset"])
                lineno = state["line"]
                pending = 0
                while True:
                    raw_line = f.readline()
                    if not raw_line:
                        break
                    lineno += 1
                    try:
                        mid, stem, name, data = parse_line(raw_line.decode("utf-8"))
                        img, ext = decode_image(data)
                    except (ValueError, UnicodeDecodeError) as e:
                        errors.writerow([tsv, lineno, str(e)])
                        counts["bad_row"] += 1
                    else:
                        atomic.write_bytes(out / mid / f"{stem}.{ext}", img)
                        counts["written"] += 1
                        if name and mid not in seen_names:
                            seen_names.add(mid)
                            nf.write(f"{mid}\t{name}\n")
                    pending += 1
                    if pending >= commit_every:
                        _commit(prog_path, progress, key, f.tell(), lineno, ef, nf)
                        pending = 0
                _commit(prog_path, progress, key, f.tell(), lineno, ef, nf)
    return counts


def _commit(path: Path, progress: dict, key: str, offset: int, line: int, *files) -> None:
    for fh in files:
        fh.flush()
    progress[key] = {"offset": offset, "line": line}
    atomic.write_text(path, json.dumps(progress, indent=1) + "\n")
