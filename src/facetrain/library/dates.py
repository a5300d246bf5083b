"""When a photo was taken, as the library shows and orders photos: the camera's EXIF date
when it wrote a real one, else the file's own date — as photo programs do for scans,
screenshots and photos whose EXIF a messenger stripped."""

from __future__ import annotations

import re
from datetime import datetime

# "2019:07:14 15:02:33" as EXIF writes it; some programs write "-" or "/" in the date, leave
# out the seconds or the time, or add a time zone (ignored: EXIF's own dates are local)
EXIF_DATE = re.compile(
    r"\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?"
)
EARLIEST = 1826  # the oldest surviving photograph: an earlier year is a camera's blank


def exif_date(text: str | None) -> datetime | None:
    """An EXIF date as written in a file, or None when there is none or it is no date (a
    camera whose clock was never set writes "0000:00:00 00:00:00" or blanks)."""
    m = EXIF_DATE.match(text or "")
    if m is None:
        return None
    try:
        when = datetime(*(int(g or 0) for g in m.groups()))
    except ValueError:  # month 0, day 31 of April, 25 o'clock
        return None
    return when if when.year >= EARLIEST else None


def photo_date(taken: str | None, mtime: float | None) -> tuple[datetime | None, str]:
    """When a photo was taken and what says so: ("exif"), else its file ("file"), else
    neither ("")."""
    when = exif_date(taken)
    if when is not None:
        return when, "exif"
    if mtime is not None:
        try:
            return datetime.fromtimestamp(mtime), "file"
        except (OverflowError, OSError, ValueError):  # a file dated beyond the calendar
            pass
    return None, ""


def with_date(photo: dict) -> dict:
    """A photo row (`taken`, `mtime`) with its `date` and what says so (`dated_by`) added."""
    photo["date"], photo["dated_by"] = photo_date(photo.get("taken"), photo.get("mtime"))
    return photo


def date_text(photo: dict) -> str:
    """A photo's date (`with_date`'s) as the library prints it: "2019-07-14 15:02",
    "2019-07-14 15:02 (file)" when only its file says so, or "" for none."""
    if photo["date"] is None:
        return ""
    return photo["date"].strftime("%Y-%m-%d %H:%M") + (" (file)" if photo["dated_by"] == "file"
                                                        else "")  # fmt: skip


def latest_first(rows: list[dict]) -> list[dict]:
    """Photo rows (`taken`, `mtime`, `id`) with their `date` and `dated_by` added, the
    latest first; undated ones last, in the order they were scanned."""
    for r in rows:
        with_date(r)
    dated = sorted((r for r in rows if r["date"]), key=lambda r: (r["date"], r["id"]),
                   reverse=True)  # fmt: skip
    return dated + sorted((r for r in rows if not r["date"]), key=lambda r: r["id"])
