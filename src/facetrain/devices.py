"""The one check of a `--device` value, for every command that takes one, and how many
CPU threads and processes a command runs on (the cores free, a container's quota and
memory limit)."""

from __future__ import annotations

import functools
import os
import re
import statistics
import time
from contextlib import contextmanager

from facetrain.errors import FacetrainError


class DeviceError(FacetrainError):
    """A device that is not a device name, or not on this machine."""


def check_name(device: str, setting: str = "--device") -> str:
    """`device` when it is a device name (cpu, cuda, cuda:N, mps), present here or not."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device or ""):
        raise DeviceError(f"{setting} {device!r}: choose cpu, cuda, cuda:N or mps")
    return device


def check_device(device: str, setting: str = "--device") -> str:
    """`device` when it names a device this machine has (cpu, cuda, cuda:N, mps)."""
    check_name(device, setting)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(f"{setting} {device}: no CUDA device is available here")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{setting} {device}: this machine has {torch.cuda.device_count()}")
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise DeviceError(f"{setting} mps: no Apple GPU (MPS) is available here")
    return device


@contextmanager
def cpu_threads(n: int = 1):
    """torch's CPU threads set to `n` for a block, then put back: small matrices run no
    faster on more threads, and on a busy machine torch's default (one per core) fights
    the other jobs for them (personalize: 551 s at the default against 88 s on one)."""
    import torch

    was = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(was)


def use_threads(n: int) -> None:
    """This process computes on `n` CPU threads, whichever runs its networks: ONNX Runtime's
    sessions made from now on (FACETRAIN_THREADS), torch told now if it is imported, else
    when it is (OMP_NUM_THREADS is read at its import)."""
    import sys

    os.environ["FACETRAIN_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


@functools.cache  # a process's setting: made once, however often embedding asks for it
def keep_freed_memory(limit: int = 256 << 20) -> None:
    """A process that runs a network batch after batch keeps the large buffers it frees
    (pyramid levels, activations) for the next batch, up to `limit`. glibc's default hands
    each one back to the system when freed and maps it afresh next time, zeroed by the
    kernel: about 3% of a scan worker's time, and half of a PyTorch forward pass on a CPU
    (`bench/cpu_memory.py`). Nothing changes on other C libraries."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    mallopt(m_mmap_threshold, limit)
    mallopt(m_trim_threshold, 2 * limit)


def inference_threads() -> int:
    """CPU threads for commands that use a model (compare, embed, scan, identify, ...):
    FACETRAIN_THREADS when set; otherwise the cores other jobs are not keeping busy now
    (`cores_busy`), at least one. torch's default, one thread a core, spins against the
    other jobs of a busy machine: a warm pair took 2.4–5.3 s on two busy cores, 0.42 s on
    one. Training is not affected: its threads are a setting it records (`--set threads=N`)."""
    return _threads_given() or _threads_free()


def cores_free() -> int:
    """The cores other jobs are not keeping busy now (`cores_busy`), at least one. In a
    container held to a CPU quota, the cores the quota gives: the tasks Linux counts are
    the whole host's, not the container's."""
    cores = _cores()
    if cpu_quota() is not None:
        return cores
    return max(1, cores - min(cores, int(cores_busy() + 0.5)))


# looked at once a process: a later look would count this process's own threads (torch's
# keep spinning a while after each operation)
_threads_free = functools.cache(cores_free)


def cores_to_use() -> int:
    """CPU cores a command may keep busy with processes of one thread each (a scan's
    workers): FACETRAIN_THREADS when set, else every core this process may run on. Not
    less for a busy machine, as `inference_threads` is: a process of one thread does not
    spin against other jobs."""
    return _threads_given() or _cores()


def check_workers(workers: int) -> None:
    """ValueError for a number of threads or processes no command takes (a negative one);
    0 lets the command choose."""
    if workers < 0:
        raise ValueError(f"--workers {workers}: 1 or more, or 0 to let facetrain choose")


def _cores() -> int:
    """Cores this process may run on: its affinity where the system has one (Linux), else
    every core (macOS); no more than a container's CPU quota (`cpu_quota`): a pod held to
    4 CPUs on a 96-core node would otherwise run 96 threads, or scan with 96 processes, in
    the time of 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return within_quota(cores)


def within_quota(threads: int) -> int:
    """`threads`, no more than a container's CPU quota allows (`cpu_quota`)."""
    return min(threads, cpu_quota() or threads)


CGROUP = "/sys/fs/cgroup"  # where Linux says what a container (a cgroup) may use


def cpu_quota() -> int | None:
    """The CPUs a container's quota allows, rounded up (cgroup v2's cpu.max, v1's CFS
    quota); None where there is none."""
    v1 = ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")
    for read in (lambda: _cgroup("cpu.max").split(),  # "150000 100000", or "max 100000"
                 lambda: [_cgroup(name) for name in v1]):  # fmt: skip
        try:
            quota, period = read()
            if quota != "max" and int(quota) > 0 and int(period) > 0:
                return max(1, -(-int(quota) // int(period)))
        except (OSError, ValueError):
            continue
    return None


def _cgroup(name: str) -> str:
    with open(os.path.join(CGROUP, name), encoding="ascii") as f:
        return f.read().strip()


PROC_STAT = "/proc/stat"  # where Linux counts the tasks ready to run


def cores_busy() -> float:
    """How many cores other jobs keep busy now: the tasks ready to run, less this one (the
    median of five looks, 2 ms apart). Not the 1-minute load average: that still counts
    the command run just before, so the next one ran on one thread of two (an `embed` of
    600 photos 25 s instead of 17). Where there is no such count (macOS), the load average
    is what there is; where there is neither, none."""
    looks = []
    for _ in range(5):
        try:
            with open(PROC_STAT, encoding="ascii") as f:
                line = next(ln for ln in f if ln.startswith("procs_running"))
            looks.append(int(line.split()[1]) - 1)
        except (OSError, StopIteration, ValueError, IndexError):
            break
        time.sleep(0.002)
    if looks:
        return max(0.0, statistics.median(looks))
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _threads_given() -> int | None:
    given = os.environ.get("FACETRAIN_THREADS", "").strip()
    if not given:
        return None
    if not given.isdigit() or int(given) < 1:
        raise FacetrainError(f"FACETRAIN_THREADS={given!r}: a whole number ≥ 1")
    return int(given)


def out_of_memory(e: BaseException) -> bool:
    """Whether torch's error says a device ran out of memory: a GPU's OutOfMemoryError,
    or the CPU allocator's, which is a plain RuntimeError ("can't allocate memory")."""
    said = type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)
    return isinstance(e, RuntimeError) and said  # (torch is not imported here)


def memory_available() -> int | None:
    """Bytes of memory this machine can give without swapping (Linux's MemAvailable: free
    plus what the page cache would hand back), no more than a container's memory limit
    leaves (`memory_left`: the host's figure would have a pod's scan start workers
    enough to be killed); None where it cannot be read."""
    known = [m for m in (_machine_memory(), memory_left()) if m is not None]
    return min(known) if known else None


def _machine_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def memory_left() -> int | None:
    """Bytes a container's memory limit leaves it: the limit less its working set, the
    memory in use less the page cache it may drop (inactive files), as Kubernetes counts
    it (cgroup v2's memory.max, memory.current and memory.stat; v1's limit, usage and
    stat); None where there is no limit."""
    v1 = ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat")
    for limit, used, stat in (("memory.max", "memory.current", "memory.stat"), v1):
        try:
            cap = _cgroup(limit)
            if cap == "max" or int(cap) >= 1 << 60:  # v1 writes "no limit" as a huge number
                return None
            return max(0, int(cap) - int(_cgroup(used)) + _inactive_files(stat))
        except (OSError, ValueError):
            continue
    return None


def _inactive_files(stat: str) -> int:
    """The page cache a cgroup may drop (memory.stat's inactive_file; v1's total_), or 0."""
    try:
        lines = dict(ln.split()[:2] for ln in _cgroup(stat).splitlines() if " " in ln)
    except OSError:
        return 0
    return int(lines.get("total_inactive_file", lines.get("inactive_file", 0)))


def describe(device: str) -> dict[str, str]:
    """What a computation's figures depend on beyond the code (its revision) and its
    settings: the versions that ran it and the processor, with the instruction set torch's
    CPU kernels chose (AVX2 and AVX-512 kernels round sums differently, so the same pinned
    run repeats bit for bit on one kind of CPU and not across kinds); the GPU when
    `device` is one."""
    import platform

    import torch

    kernels = getattr(torch.backends.cpu, "get_cpu_capability", None)  # torch 2.1 on
    d = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_name(),
        "cpu_kernels": kernels() if kernels else "unknown",
    }
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        try:  # a record must not stop a run: a GPU that cannot say is said to be unknown
            major, minor = torch.cuda.get_device_capability(index)
            d["gpu"] = f"{torch.cuda.get_device_name(index)} (sm_{major}{minor})"
        except Exception as e:  # noqa: BLE001 (CUDA raises RuntimeError, AssertionError, …)
            d["gpu"] = f"unknown ({e})"
        d["cuda"] = str(torch.version.cuda)
    return d


CPUINFO = "/proc/cpuinfo"


def cpu_name() -> str:
    """The processor's name, with its family and model where the name alone does not tell
    generations apart ('AMD EPYC' names several, with different instruction sets)."""
    import platform

    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            head = f.read().split("\n\n")[0]
    except OSError:
        return platform.processor() or platform.machine()
    info = dict(ln.split(":", 1) for ln in head.splitlines() if ":" in ln)
    info = {k.strip(): v.strip() for k, v in info.items()}
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        return f"{name} (family {info['cpu family']}, model {info['model']})"
    return name
