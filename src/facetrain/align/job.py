"""`facetrain align`: raw photo folders → aligned face crops + alignment.csv.

The job is made to be killed: every output image is written to a temporary name and
renamed, a CSV row is appended only after its image exists, and a re-run skips every
input that already has a row. `--shard i/n` lets n machines split one job without talking
to each other (a stable hash of identity/name picks the shard). The source tree is only
ever read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facetrain import atomic
from facetrain.data.alignment import MODES, read_alignment
from facetrain.data.images import DEFAULT_MAX_PIXELS, ImageError, load_rgb
from facetrain.data.listing import Problems, Sample, iter_samples
from facetrain.errors import FacetrainError
from facetrain.lock import held
from facetrain.run_folder import ALIGN_RECORD

# the largest face written, in pixels a side: recognition networks take 96 to 224, and a
# size of 100,000 asked OpenCV for 30 GB a face (a traceback from a worker process)
MAX_SIZE = 1024
CSV_FIELDS = [
    "source", "identity", "name", "face", "status", "reason", "output", "score",
    "x1", "y1", "x2", "y2",
    *[f"lm{i}{c}" for i in range(1, 6) for c in "xy"],
]  # fmt: skip


@dataclass(frozen=True)
class AlignConfig:
    mode: str = "similarity"
    size: int | None = None  # None: 112 for similarity, 182 for box
    margin: float = 44.0
    select: str = "center"
    min_face: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    detect_max_side: int = 1600  # detect on a copy no larger than this; warp from the original
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int = 95
    device: str = "cpu"
    batch_size: int = 16
    merge_same_names: bool = False

    @property
    def out_size(self) -> int:
        return self.size or (112 if self.mode == "similarity" else 182)

    def validate(self) -> None:
        """Every setting against what it may be (AlignError names it and the choices)."""
        from facetrain.align.transform import SELECT_MODES
        from facetrain.devices import check_device

        rules = [
            (self.mode not in MODES, f"--mode {self.mode!r}: choose from {', '.join(MODES)}"),
            (self.select not in SELECT_MODES,
             f"--select {self.select!r}: choose from {', '.join(SELECT_MODES)}"),
            (self.size is not None and not 16 <= self.size <= MAX_SIZE,
             f"--size {self.size}: from 16 to {MAX_SIZE} pixels"),
            (not 0 <= self.margin < float("inf"),  # NaN failed every photo, one by one
             f"--margin {self.margin}: pixels around the box, a finite number ≥ 0"),
            (self.min_face < 12, "--min-face must be at least 12 (MTCNN's smallest window)"),
            (not 0.1 < self.factor < 1.0, "--factor must be in (0.1, 1)"),
            (len(self.thresholds) != 3 or not all(0.0 < t < 1.0 for t in self.thresholds),
             "--thresholds: three numbers in (0, 1), e.g. 0.6,0.7,0.7"),
            (self.detect_max_side < 16, f"--detect-max-side {self.detect_max_side}: at least 16"),
            (self.batch_size < 1, f"--batch-size {self.batch_size}: at least 1"),
            (self.max_pixels < 1, f"--max-pixels {self.max_pixels}: at least 1"),
        ]  # fmt: skip
        for broken, message in rules:
            if broken:
                raise AlignError(message)
        check_device(self.device)

    def output_settings(self) -> dict:
        """The settings that shape output files: a resumed job must keep them."""
        keys = ("mode", "margin", "select", "min_face", "thresholds", "factor", "jpeg_quality")
        d = {k: getattr(self, k) for k in keys}
        d["size"] = self.out_size
        d["thresholds"] = list(self.thresholds)
        return d


class AlignError(FacetrainError):
    """Alignment settings or folders that cannot be used."""


@dataclass
class AlignSummary:
    counts: Counter = field(default_factory=Counter)
    skipped_done: int = 0
    problems: Problems = field(default_factory=Problems)
    csv_path: str = ""
    seconds: float = 0.0
    faces_written: int = 0


def sample_key(s: Sample) -> str:
    return f"{s.identity}/{s.name}"


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    i, n = shard
    return n == 1 or zlib.crc32(key.encode()) % n == i


def csv_name(shard: tuple[int, int]) -> str:
    i, n = shard
    return "alignment.csv" if n == 1 else f"alignment-{i}-of-{n}.csv"


def _repair_tail(path: Path) -> None:
    """Drop a half-written last line left by a kill."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        f.truncate(size - len(tail) + cut + 1 if cut >= 0 else 0)


def load_done(path: Path) -> np.ndarray:
    """Sorted 64-bit hashes of the inputs that already have a row (8 bytes per input)."""
    if not path.exists():
        return np.zeros(0, np.uint64)
    _repair_tail(path)
    chunks, buf = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            buf.append(key_hash(f"{row['identity']}/{row['name']}"))
            if len(buf) >= 65536:
                chunks.append(np.array(buf, np.uint64))
                buf = []
    chunks.append(np.array(buf, np.uint64))
    return np.unique(np.concatenate(chunks))


def _is_done(done: np.ndarray, key: str) -> bool:
    if len(done) == 0:
        return False
    h = np.uint64(key_hash(key))
    i = np.searchsorted(done, h)
    return bool(i < len(done) and done[i] == h)


def pending(
    roots, cfg: AlignConfig, shard, done: np.ndarray, problems: Problems
) -> Iterator[Sample]:
    for s in iter_samples(roots, merge_same_names=cfg.merge_same_names, problems=problems):
        key = sample_key(s)
        if in_shard(key, shard) and not _is_done(done, key):
            yield s


# --- worker side ---------------------------------------------------------------------

_detector = None
_cfg: AlignConfig | None = None
_out: Path | None = None


def _init_worker(cfg: AlignConfig, out: str, threads: int) -> None:
    global _detector, _cfg, _out
    from facetrain.align.detector import MTCNN, DetectorConfig
    from facetrain.devices import keep_freed_memory, use_threads

    if threads > 0:
        use_threads(threads)
    keep_freed_memory()
    _cfg, _out = cfg, Path(out)
    _detector = MTCNN(DetectorConfig(cfg.min_face, cfg.thresholds, cfg.factor, cfg.device))


def _row(s: Sample, status: str, reason: str = "", **kw) -> dict:
    row = dict.fromkeys(CSV_FIELDS, "")
    row.update(source=s.path, identity=s.identity, name=s.name, status=status, reason=reason)
    row.update(kw)
    return row


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def process_chunk(samples: list[Sample]) -> list[dict]:
    """Load, detect, align and write one chunk of samples; one CSV row per input or face."""
    from facetrain.align.faces import detect_photos
    from facetrain.align.transform import align_face, select_faces

    cfg, out, det = _cfg, _out, _detector
    assert cfg is not None and out is not None and det is not None
    settings = cfg.output_settings()
    rows: list[dict] = []
    loaded: list[tuple[Sample, np.ndarray]] = []
    for s in samples:
        try:
            img = load_rgb(s.path, cfg.max_pixels)
        except ImageError as e:
            rows.append(_row(s, e.status, e.reason))
            continue
        except OSError as e:
            rows.append(_row(s, "unreadable", str(e)))
            continue
        h, w = img.shape[:2]
        if min(h, w) < cfg.min_face:
            rows.append(_row(s, "too_small", f"{w}x{h} is below the minimum face size"))
            continue
        loaded.append((s, img))
    found = detect_photos(det, [x[1] for x in loaded], cfg.detect_max_side)
    for (s, img), faces in zip(loaded, found):
        picks = select_faces(faces.boxes, img.shape, cfg.select)
        if not picks:
            rows.append(_row(s, "no_face", "no face above the detector thresholds"))
            continue
        for k, i in enumerate(picks):
            suffix = f"_{k}" if cfg.select == "all" else ""
            rel = f"{s.identity}/{s.name}{suffix}.jpg"
            try:
                crop = align_face(img, faces.boxes[i], faces.landmarks[i], settings)
            except ValueError as e:
                rows.append(_row(s, "align_failed", str(e), face=k))
                continue
            atomic.write_bytes(out / rel, encode_jpeg(crop, cfg.jpeg_quality))
            b, lm = faces.boxes[i], faces.landmarks[i].reshape(-1)
            extra = {f: f"{v:.2f}" for f, v in zip(CSV_FIELDS[8:], [*b, *lm])}
            rows.append(_row(s, "ok", output=rel, face=k, score=f"{faces.scores[i]:.5f}", **extra))
    return rows


# --- driver side ----------------------------------------------------------------------


def _chunks(samples: Iterable[Sample], n: int) -> Iterator[list[Sample]]:
    buf: list[Sample] = []
    for s in samples:
        buf.append(s)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def _check_config(out: Path, cfg: AlignConfig) -> None:
    path = out / ALIGN_RECORD
    want = cfg.output_settings()
    if path.exists():
        have = read_alignment(out) or {}
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: {a} (existing) vs {b} (now)" for k, (a, b) in diff.items())
            raise AlignError(f"{out} was aligned with other settings ({detail}); use a new OUT")
    else:
        atomic.write_text(path, json.dumps(want, indent=2) + "\n")


def run_align(
    roots: str | os.PathLike | list,
    out: str | os.PathLike,
    cfg: AlignConfig,
    *,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    progress: bool | None = None,
    on_row=None,
) -> AlignSummary:
    """Align every pending input of the shard of `roots` (one root, or a list: folders of
    photos per person, list files, MS-Celeb TSVs); returns counts by status. One process
    at a time on a shard: a second is refused, naming the first."""
    cfg.validate()
    roots = [roots] if isinstance(roots, str | os.PathLike) else list(roots)  # not per letter
    out = Path(out)
    if any(Path(r).resolve() == out.resolve() for r in roots):
        raise AlignError("OUT must not be one of the input roots")
    atomic.output_folder(out, inputs=roots, own=(ALIGN_RECORD,), kind="aligned-faces")
    _check_config(out, cfg)
    csv_path = out / csv_name(shard)
    # a second align of the same shard recorded every input the first had left twice
    what = f"{out}" + (f" (shard {shard[0]} of {shard[1]})" if shard[1] > 1 else "")
    with held(out / f".{csv_path.name}.lock", what):
        return _align_pending(roots, out, cfg, csv_path, shard, workers, progress, on_row)


def _align_pending(roots: list, out: Path, cfg: AlignConfig, csv_path: Path, shard, workers: int,
                   progress: bool | None, on_row) -> AlignSummary:  # fmt: skip
    """The inputs of the shard not recorded in `csv_path` yet, aligned and recorded."""
    from facetrain.progress import progress_bar

    done = load_done(csv_path)
    summary = AlignSummary(csv_path=str(csv_path), skipped_done=len(done))
    total = sum(1 for _ in pending(roots, cfg, shard, done, Problems()))
    workers, threads = _worker_counts(cfg, workers)
    t0 = time.perf_counter()
    with (
        _Ledger(csv_path, summary, on_row) as ledger,
        progress_bar(disable=progress is False if progress is not None else None) as bar,
    ):
        task = bar.add_task("align", total=total)

        def commit(rows: list[dict], n_inputs: int) -> None:
            ledger.write(rows)
            bar.advance(task, n_inputs)
            rate = bar.tasks[0].completed / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, rate=f"{rate:.1f} img/s")

        chunks = _chunks(pending(roots, cfg, shard, done, summary.problems), cfg.batch_size)
        _process(chunks, cfg, out, workers, threads, commit)
    summary.seconds = time.perf_counter() - t0
    for sub in out.rglob("*"):
        if sub.is_dir():
            atomic.remove_stale_temps(sub)
    return summary


class _Ledger:
    """The shard's CSV of results, one row an input, appended as inputs finish (what a
    resumed job skips): flushed every batch, synced to disk every few seconds and at the
    end; the summary counts every row."""

    SYNC_SECONDS = 5

    def __init__(self, path: Path, summary: AlignSummary, on_row=None):
        self.path, self.summary, self.on_row = path, summary, on_row

    def __enter__(self) -> _Ledger:
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        self.file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.DictWriter(self.file, CSV_FIELDS)
        if new_file:
            self.writer.writeheader()
        self.last_sync = time.monotonic()
        return self

    def write(self, rows: list[dict]) -> None:
        self.writer.writerows(rows)
        self.file.flush()
        if time.monotonic() - self.last_sync > self.SYNC_SECONDS:
            os.fsync(self.file.fileno())
            self.last_sync = time.monotonic()
        for r in rows:
            self.summary.counts[r["status"]] += 1
            if self.on_row:
                self.on_row(r)
        self.summary.faces_written += sum(r["status"] == "ok" for r in rows)

    def __exit__(self, *exc) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _worker_counts(cfg: AlignConfig, workers: int) -> tuple[int, int]:
    """Processes (0: one per core on a CPU, one on a GPU) and torch threads per process."""
    ncpu = os.cpu_count() or 1
    if workers <= 0:
        workers = 1 if cfg.device != "cpu" else ncpu
    return workers, max(1, ncpu // workers)


def _process(chunks, cfg: AlignConfig, out: Path, workers: int, threads: int, commit) -> None:
    """Every chunk through `process_chunk`, in this process or a pool; results go to
    `commit(rows, n_inputs)` as they come (at most 3 chunks a worker in flight)."""
    if workers == 1:
        _init_worker(cfg, str(out), threads if cfg.device == "cpu" else 0)
        for chunk in chunks:
            commit(process_chunk(chunk), len(chunk))
        return
    import multiprocessing as mp

    from facetrain import runtime

    # The workers' detector runs ONNX Runtime on a CPU: spawned, because ONNX Runtime is
    # not fork-safe once a session exists in the parent (a forked worker hung on its lock),
    # and a spawn imports no torch. PyTorch's detector (FACETRAIN_RUNTIME=torch) forks, to
    # share the imported torch (a spawn re-imports it, seconds apiece; the parent runs no
    # torch op, so no thread pool is copied). CUDA cannot be used in a forked child: a GPU
    # job spawns.
    fork = ("fork" in mp.get_all_start_methods() and cfg.device == "cpu"
            and not runtime.enabled(cfg.device))  # fmt: skip
    if fork:
        import facetrain.align.nets  # noqa: F401  (torch imported once, inherited by forks)
    ctx = mp.get_context("fork" if fork else "spawn")
    init = (cfg, str(out), threads)
    with ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=init) as ex:
        inflight: dict[Future, int] = {}
        for chunk in chunks:
            inflight[ex.submit(process_chunk, chunk)] = len(chunk)
            while len(inflight) >= 3 * workers:
                ready, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in ready:
                    commit(fut.result(), inflight.pop(fut))
        for fut in list(inflight):
            commit(fut.result(), inflight.pop(fut))


def summary_dict(s: AlignSummary) -> dict:
    d = asdict(s)
    d["counts"] = dict(s.counts)
    d["problems"] = dict(s.problems.counts)
    return d
