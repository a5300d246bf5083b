"""One progress bar style for every long step: count, rate, elapsed and ETA — a live bar
on a terminal, plain lines in a log (a job under nohup, cron or a cluster scheduler)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# Shown as escapes, never sent raw: C0/C1 controls (a terminal's escape sequences, a
# carriage return that overwrites the line), bidirectional overrides and isolates (an
# "exe.jpg" that reads "gpj.exe"), and lone surrogates (a file name not valid UTF-8).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069\ud800-\udfff]")  # fmt: skip


def counted(n: int, one: str, many: str | None = None) -> str:
    """A count with its noun as it is said: `1 face`, `2 faces`, `1 copy`, `3 copies`,
    `10,892 images`."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def shown(text) -> str:
    """Text from outside (a file or person name, a path) made safe to print on a terminal:
    controls, direction overrides and lone surrogates written as visible escapes."""
    text = str(text)

    def esc(m: re.Match) -> str:
        c = ord(m.group())
        if 0xDC80 <= c <= 0xDCFF:  # a byte of a non-UTF-8 name (surrogateescape)
            return f"\\x{c - 0xDC00:02x}"
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _UNSAFE.sub(esc, text)


class SafeConsole(Console):
    """facetrain's console: markup off (a name like `[/]` or `[red]` prints as it is, and
    never crashes a command that has already changed something), and every string shown
    through `shown`. Styled words are given as `style=` or `Text`, never as markup."""

    def render_str(self, text: str, **kw):
        return super().render_str(shown(text), **kw)


console = SafeConsole(stderr=True, soft_wrap=True, markup=False)  # never break a path
# what a command answers, for a pipe (`facetrain models | grep iresnet`); messages: `console`
stdout_console = SafeConsole(soft_wrap=True, markup=False)


class _Rate(ProgressColumn):
    """Items a second over the last half minute (rich's own estimate), or what the step
    says its rate is (`rate=` field)."""

    def render(self, task) -> Text:
        given = task.fields.get("rate")
        return Text(given or (f"{task.speed:.1f}/s" if task.speed else ""))


class _Note(ProgressColumn):
    """What the step adds (`note=` field): the loss of a training run."""

    def render(self, task) -> Text:
        return Text(str(task.fields.get("note", "")))


def progress_bar(*, disable: bool | None = None, every: float = 30.0):
    """A rich Progress on stderr when it is a terminal; otherwise (disable None) plain lines,
    one per `every` seconds (FACETRAIN_PROGRESS_EVERY) once a step has run that long
    (short steps print nothing);
    nothing when disable is True."""
    if disable is None and not sys.stderr.isatty():
        return PlainProgress(float(os.environ.get("FACETRAIN_PROGRESS_EVERY", every)))
    return Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        _Note(),
        console=console,
        disable=bool(disable),
        transient=False,
        # a line printed while the bar runs goes above it on the screen, but an answer on
        # stdout sent to a file or a pipe stays there (rich would bring it to the bar's
        # terminal: `classify predict … > names.tsv` wrote an empty file)
        redirect_stdout=sys.stdout.isatty(),
    )


@contextlib.contextmanager
def phases(titles: dict[str, str], *, disable: bool | None = None):
    """A bar for each phase of a job whose steps say how far they are: yields
    `said(phase, done, total)`, which shows a phase named in `titles` under its title
    (its bar added the first time it is said) and ignores any other."""
    with progress_bar(disable=disable) as bar:
        tasks: dict[str, int] = {}
        last: dict[str, int] = {}  # each phase's count said before

        def said(phase: str, done: int, total: int) -> None:
            if phase not in titles:
                return
            if phase not in tasks:
                tasks[phase] = bar.add_task(titles[phase], total=total)
            bar.advance(tasks[phase], done - last.get(phase, 0))
            last[phase] = done

        yield said


@contextlib.contextmanager
def step_task(bar, title: str, total: int):
    """A task of its own on a running bar (verification during training), gone from the bar
    when the step ends: yields `advance(n)`. Without a bar (None: a test, another rank),
    an `advance` that shows nothing."""
    if bar is None:
        yield lambda n: None
        return
    task = bar.add_task(title, total=total)
    try:
        yield lambda n: bar.advance(task, n)
    finally:
        bar.remove_task(task)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    fields: dict = field(default_factory=dict)
    initial: float = 0.0  # done before this process started (a resumed job): not its rate
    shown: float | None = None  # the count its last line said (a closing line repeats none)
    start: float = field(default_factory=lambda: time.monotonic())  # rate, elapsed from here
    end: float | None = None  # when it reached its total: a closing line's time, not now's
    removed: bool = False  # its step ended (`remove_task`): no closing line at the bar's end


class PlainProgress:
    """The part of rich's Progress that facetrain's steps use, written as log lines:
    `scan 1200/4000 (30%) 4.1/s, elapsed 4:52, ETA 11:23`."""

    def __init__(self, every: float = 30.0):
        self.every, self.tasks = every, []
        self.start = self.last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.last > self.start:  # it printed: say where it ended, never the same line twice
            for i, t in enumerate(self.tasks):
                if t.completed != t.shown and not t.removed:
                    self._line(i)

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **fields) -> int:  # fmt: skip
        self.tasks.append(_Task(description, total, completed, fields, initial=completed))
        return len(self.tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self._count(task, self.tasks[task].completed + advance)
        if time.monotonic() - self.last >= self.every:
            self._line(task)

    def remove_task(self, task: int) -> None:
        """The task's step is over: a task that printed says where it ended, once."""
        t = self.tasks[task]
        if t.shown is not None and t.completed != t.shown:
            self._line(task)
        t.removed = True

    def update(self, task: int, completed: float | None = None, **fields) -> None:
        if completed is not None:
            self._count(task, completed)
        self.tasks[task].fields.update(fields)

    def _count(self, task: int, completed: float) -> None:
        t = self.tasks[task]
        t.completed = completed
        reached = bool(t.total) and completed >= t.total
        t.end = (t.end or time.monotonic()) if reached else None

    def _line(self, task: int) -> None:
        t = self.tasks[task]
        self.last, t.shown = time.monotonic(), t.completed
        # a later phase's rate is not its wait for the first ones, nor a done one's for later
        elapsed = (t.end or self.last) - t.start
        rate = (t.completed - t.initial) / elapsed if elapsed > 0 else 0.0
        done = f"{t.completed:.0f}" + (f"/{t.total:.0f} ({t.completed / t.total:.0%})"
                                       if t.total else "")  # fmt: skip
        left = (t.total - t.completed) / rate if t.total and rate > 0 else None
        eta = f", ETA {_clock(left)}" if left is not None else ""
        note = f", {t.fields['note']}" if t.fields.get("note") else ""
        print(f"{t.description} {done} {rate:.1f}/s, elapsed {_clock(elapsed)}{eta}{note}",
              file=sys.stderr, flush=True)  # fmt: skip


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
