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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facetrain import atomic, foreign
from facetrain.data.images import encoded_ext
from facetrain.lock import held

PROGRESS_FILE = "msceleb_progress.json"
ERRORS_FILE = "msceleb_errors.csv"
LOCK = ".msceleb.lock"  # held while TSVs are decoded into OUT: one process at a time
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


MB = 1 << 20


@dataclass
class _Job:
    """What decoding writes besides the images: the bad rows, the names, the offsets done
    (committed after the images before them exist), the counts and the progress bar."""

    out: Path
    done: dict  # absolute TSV path → {"offset", "line"} decoded so far
    errors: Any  # a csv.writer of OUT/msceleb_errors.csv
    files: tuple  # the open errors and names files, flushed before each commit
    counts: Counter = field(default_factory=Counter)
    advance: Callable[[int], None] = lambda n: None  # bytes read

    def commit(self, tsv: str, offset: int, line: int) -> None:
        for fh in self.files:
            fh.flush()
        self.done[os.path.abspath(tsv)] = {"offset": offset, "line": line}
        atomic.write_text(self.out / PROGRESS_FILE, json.dumps(self.done, indent=1) + "\n")


def decode_tsv(tsvs: list[str], out: str | os.PathLike, *, commit_every: int = 500,
               progress: bool | None = None) -> Counter:  # fmt: skip
    """Decode every TSV into OUT, with a progress bar over their bytes (MS-Celeb's files
    are tens of gigabytes); returns counts (written, bad_row, files_already_done,
    empty_file)."""
    own = (PROGRESS_FILE, ERRORS_FILE, LOCK)
    out = atomic.output_folder(out, own=own, kind="decoded MS-Celeb")
    with held(out / LOCK, f"decoding into {out}"):  # a second run: its rows, twice
        return _decode_all(tsvs, out, commit_every, progress)


def _decode_all(tsvs: list[str], out: Path, commit_every: int, progress: bool | None) -> Counter:
    """The TSVs' rows not decoded yet (OUT's progress record), decoded into OUT."""
    from facetrain.progress import progress_bar

    done = _read_progress(out / PROGRESS_FILE)
    sizes = {tsv: os.path.getsize(tsv) for tsv in tsvs}
    starts = {t: done.get(os.path.abspath(t), {"offset": 0, "line": 0}) for t in tsvs}
    new_err = not (out / ERRORS_FILE).exists()
    with (
        open(out / ERRORS_FILE, "a", newline="", encoding="utf-8") as ef,
        open(out / NAMES_FILE, "a", encoding="utf-8") as nf,
        progress_bar(disable=progress is False if progress is not None else None) as bar,
    ):
        job = _Job(out, done, csv.writer(ef), (ef, nf))
        if new_err:
            job.errors.writerow(["file", "line", "reason"])
        before = sum(min(starts[t]["offset"], sizes[t]) for t in tsvs)
        task = bar.add_task("decode (MB)", total=sum(sizes.values()) / MB, completed=before / MB)
        job.advance = lambda n: bar.advance(task, n / MB)
        for tsv in tsvs:
            if sizes[tsv] == 0:
                job.counts["empty_file"] += 1
            elif starts[tsv]["offset"] >= sizes[tsv]:
                job.counts["files_already_done"] += 1
            else:
                _decode_file(tsv, starts[tsv], job, commit_every)
    return job.counts


def _read_progress(path: Path) -> dict:
    """The offsets decoded so far, per TSV; DatasetError naming the file when damaged."""
    from facetrain.data.listing import DatasetError

    if not path.exists():
        return {}
    try:
        got = foreign.loads(path.read_bytes())
    except ValueError as e:
        raise DatasetError(f"{path}: damaged ({e}); remove it to decode every TSV again") from None
    if not (isinstance(got, dict) and all(map(_offsets, got.values()))):
        raise DatasetError(f"{path}: not the offsets facetrain writes; remove it to decode "
                           "every TSV again")  # fmt: skip
    return got


def _offsets(v: object) -> bool:
    """Whether `v` is one TSV's {"offset", "line"} as `_Job.commit` writes them."""
    whole = [v.get(k) if isinstance(v, dict) else None for k in ("offset", "line")]
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in whole)


def _decode_file(tsv: str, start: dict, job: _Job, commit_every: int) -> None:
    """The lines of one TSV from `start`'s offset on: each image written, each bad row
    listed, each identity's name noted once; committed every `commit_every` lines."""
    seen_names: set[str] = set()
    with open(tsv, "rb") as f:
        f.seek(start["offset"])
        lineno, pending = start["line"], 0
        while raw_line := f.readline():
            lineno += 1
            job.advance(len(raw_line))
            try:
                mid, stem, name, data = parse_line(raw_line.decode("utf-8"))
                img, ext = decode_image(data)
            except (ValueError, UnicodeDecodeError) as e:
                job.errors.writerow([tsv, lineno, str(e)])
                job.counts["bad_row"] += 1
            else:
                atomic.write_bytes(job.out / mid / f"{stem}.{ext}", img)
                job.counts["written"] += 1
                if name and mid not in seen_names:
                    seen_names.add(mid)
                    job.files[1].write(f"{mid}\t{name}\n")
            pending += 1
            if pending >= commit_every:
                job.commit(tsv, f.tell(), lineno)
                pending = 0
        job.commit(tsv, f.tell(), lineno)
