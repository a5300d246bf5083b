"""The one check of a `--device` value, for every command that takes one."""

from __future__ import annotations

import re
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
