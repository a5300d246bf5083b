"""Photos analysed by several processes, each with its own copy of a model: how many
(`workers_for`) and the processes themselves (`model_pool`). A library's scan, identify and
migrate, and a first `find` in a folder, read photos this way; what a worker returns is
used in the order given, so the result is the one process's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict

from facetrain.devices import check_workers
from facetrain.errors import FacetrainError

AUTO_FROM = 24  # photos to analyse before `workers=0` starts processes: on 2 cores, two
#                 cost 1.7 s against 1.3 for 8 photos, and save from about 20 on
WORKER_MEMORY = 700 << 20  # a worker's peak on 12-megapixel photos (619–652 MB measured)


def workers_for(workers: int, device: str, photos: int, more: int = 0) -> int:
    """How many processes analyse `photos` photos, and up to `more` others (a scan still
    listing): `workers`, at most one a photo; 0 chooses. On a CPU, from AUTO_FROM photos
    on, one a core (`cores_to_use`), as many as the memory available holds;
    otherwise one, this process: on a GPU, or for a few photos, others would cost more
    than they save. ValueError for a negative number (`check_workers`)."""
    check_workers(workers)
    if workers > 0:
        return max(1, min(workers, photos + more))
    if device != "cpu" or photos < AUTO_FROM:
        return 1
    from facetrain.devices import cores_to_use, memory_available

    cores, held = cores_to_use(), memory_available()
    return max(1, min(cores, cores if held is None else held // WORKER_MEMORY, photos + more))


@contextlib.contextmanager
def model_pool(model, device: str, workers: int, make: Callable, *args):
    """`workers` spawned processes, each with `make(its own copy of model, *args)` as its
    `worker()`, on one thread (spawned, not forked: no fork of a process holding torch
    threads or CUDA); None for one worker: the caller works here. `make` and the
    functions given to the pool are module-level (a spawned process imports them)."""
    import multiprocessing as mp

    if workers <= 1:
        yield None
        return
    spec = (model.source, asdict(model.pre), device, model.backend)
    with mp.get_context("spawn").Pool(workers, _start, (spec, make, args)) as pool:
        yield pool


_WORKER = None


def worker():
    """This worker process's object, made by `model_pool`'s `make`; FacetrainError when it
    could not be made (a model this process cannot open), said by every task."""
    if isinstance(_WORKER, FacetrainError):
        raise _WORKER
    return _WORKER


def _start(spec, make: Callable, args: tuple) -> None:
    """A worker's own copy of the model (compiled when the caller's is), on one thread:
    the workers share the cores."""
    from facetrain.devices import keep_freed_memory, use_threads
    from facetrain.inference.compiled import open_for_use

    global _WORKER
    use_threads(1)
    keep_freed_memory()
    source, pre, device, backend = spec
    try:
        fm = open_for_use(source, device, "auto", None if backend == "onnxruntime" else pre)
        _WORKER = make(fm, *args)
    except Exception as e:  # said by the tasks: a pool would start failed workers forever
        _WORKER = FacetrainError(f"a worker process could not open the model {source}: {e}")
