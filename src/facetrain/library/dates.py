"""When a photo was taken, as the library shows and orders photos: the camera's EXIF date
when it wrote a real one; else a date its file name holds, as phones, messengers and
screenshot tools name files (a messenger strips the EXIF but keeps the name); else the
file's own date — which a copy (`cp` without `-p`, a download) makes the copy's."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

# "2019:07:14 15:02:33" as EXIF writes it; some programs write "-" or "/" in the date, leave
# out the seconds or the time, or add a time zone (ignored: EXIF's own dates are local)
EXIF_DATE = re.compile(
    r"\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?"
)
EARLIEST = 1826  # the oldest surviving photograph: an earlier year is a camera's blank
# A date in a file name, with its time when there is one: IMG_20190412_153012 (Android),
# PXL_20210101_123456789 (Pixel: UTC, milliseconds too), IMG-20190412-WA0001 (WhatsApp,
# the day alone), Screenshot_2019-04-12-15-30-12, "Screenshot 2019-04-12 at 15.30.12" (macOS),
# "2019-04-12 15.30.12" (Dropbox), signal-2019-04-12-153012. Eight digits of a date and
# nothing more that is a digit on either side: IMG_1234 and 1234567890 hold none.
NAME_DATE = re.compile(
    r"(?<!\d)((?:1[89]|20)\d\d)([-_.]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])"
    r"(?:(?:[-_ T.]|\ at\ )+([01]\d|2[0-3])([-_.:]?)([0-5]\d)\6([0-5]\d)(?:\d{3})?)?(?!\d)"
)


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


def name_date(path: str | None) -> tuple[datetime | None, bool]:
    """The date a photo's file name holds (`NAME_DATE`), and whether with its time, in local
    time as EXIF dates are (a Pixel names its files in UTC: `PXL_` times are turned local)."""
    name = os.path.basename(path or "")
    m = NAME_DATE.search(name)
    if m is None:
        return None, False
    year, _, month, day, hour, _, minute, second = m.groups()
    try:
        when = datetime(*(int(g or 0) for g in (year, month, day, hour, minute, second)))
    except ValueError:  # the 31st of April
        return None, False
    if when.year < EARLIEST:
        return None, False
    if hour is not None and name.startswith("PXL_"):
        when = when.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
    return when, hour is not None


def photo_date(taken: str | None, mtime: float | None,
               path: str | None = None) -> tuple[datetime | None, str]:  # fmt: skip
    """When a photo was taken and what says so: ("exif"), else its file name ("name", or
    "name-day" for a date without a time), else its file ("file"), else neither ("")."""
    when = exif_date(taken)
    if when is not None:
        return when, "exif"
    when, timed = name_date(path)
    if when is not None:
        return when, "name" if timed else "name-day"
    if mtime is not None:
        try:
            return datetime.fromtimestamp(mtime), "file"
        except (OverflowError, OSError, ValueError):  # a file dated beyond the calendar
            pass
    return None, ""


def with_date(photo: dict) -> dict:
    """A photo row (`taken`, `mtime`, `path`) with its `date` and what says so (`dated_by`)
    added."""
    photo["date"], photo["dated_by"] = photo_date(photo.get("taken"), photo.get("mtime"),
                                                  photo.get("path"))  # fmt: skip
    return photo


SAID_BY = {"exif": "", "name": " (file name)", "name-day": " (file name)", "file": " (file)"}


def date_text(photo: dict) -> str:
    """A photo's date (`with_date`'s) as the library prints it: "2019-07-14 15:02",
    "2019-07-14 15:02 (file name)" or "2019-07-14 (file name)" when its name says so,
    "2019-07-14 15:02 (file)" when only its file's date does, or "" for none."""
    if photo["date"] is None:
        return ""
    shown = "%Y-%m-%d" if photo["dated_by"] == "name-day" else "%Y-%m-%d %H:%M"
    return photo["date"].strftime(shown) + SAID_BY[photo["dated_by"]]


def latest_first(rows: list[dict]) -> list[dict]:
    """Photo rows (`taken`, `mtime`, `id`) with their `date` and `dated_by` added, the
    latest first; undated ones last, in the order they were scanned."""
    for r in rows:
        with_date(r)
    dated = sorted((r for r in rows if r["date"]), key=lambda r: (r["date"], r["id"]),
                   reverse=True)  # fmt: skip
    return dated + sorted((r for r in rows if not r["date"]), key=lambda r: r["id"])


PERIOD = re.compile(r"\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?\s*")


def period(text: str) -> tuple[datetime, datetime]:
    """A year, month or day as the owner types it ("2019", "2019-07", "2019-07-14"): its
    first moment and the first moment after it. ValueError naming the text otherwise."""
    m = PERIOD.fullmatch(text)
    why = f"{text!r}: a year, month or day, as 2019, 2019-07 or 2019-07-14"
    if m is None:
        raise ValueError(why)
    year, month, day = (int(g) if g else None for g in m.groups())
    try:
        start = datetime(year, month or 1, day or 1)
    except ValueError:  # month 13, the 31st of April, year 0
        raise ValueError(why) from None
    try:
        if day is not None:
            return start, start + timedelta(days=1)
        if month is not None:
            return start, datetime(year + month // 12, month % 12 + 1, 1)
        return start, datetime(year + 1, 1, 1)
    except (ValueError, OverflowError):  # the end of 9999: no moment after it
        return start, datetime.max


def between(rows: list[dict], since: str | None, until: str | None) -> list[dict]:
    """The dated rows (`with_date`'s) taken from the start of `since` to the end of `until`
    (each a year, month or day; None: no bound); with a bound, undated photos are left out."""
    if since is None and until is None:
        return rows
    start = period(since)[0] if since else datetime.min
    end = period(until)[1] if until else datetime.max
    if start >= end:
        raise ValueError(f"from {since} to {until}: {since} begins after {until} ends")
    return [r for r in rows if r["date"] is not None and start <= r["date"] < end]
