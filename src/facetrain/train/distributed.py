"""Many processes, one run: PyTorch's own stack (torchrun + torch.distributed), no launcher.

`torchrun --nproc_per_node=N -m facetrain train ...` sets RANK / WORLD_SIZE / LOCAL_RANK;
`setup()` joins the process group (NCCL on GPUs, gloo on CPU). Every rank draws the same
*global* batch from the sampler and keeps its contiguous slice (`shard`), so the stream of
global batches does not depend on the number of processes — which is what lets a run
checkpointed with N processes resume with M (InsightFace's arcface_torch cannot).
Only rank 0 writes logs and checkpoints and runs verification.

The autograd-aware collectives Partial FC needs live in `facetrain.collectives`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """The process's place in a torchrun job (a single process when not launched so)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: str) -> tuple[Dist, str]:
    """Join the process group when launched by torchrun; returns (dist info, this rank's
    device: `cuda` becomes `cuda:LOCAL_RANK`)."""
    d = from_env()
    if not d.enabled:
        return d, device
    if device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # NCCL for CUDA tensors and gloo for the few small CPU ones (flags, checksums)
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.startswith("cuda") else "gloo")
    return d, device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(idx, rank: int, world: int) -> list[int]:
    """This rank's contiguous part of a global batch (whole identities of a P×K batch when
    P is a multiple of the world size)."""
    return np.array_split(np.asarray(idx), world)[rank].tolist()


def agree(loss: float, finite: bool, same_on_all: bool = False) -> tuple[float, bool]:
    """The global mean loss (or the loss every rank already shares) and whether every rank's
    step was finite — one small all-reduce, so all ranks skip or step together."""
    t = torch.tensor([0.0 if same_on_all else loss, 0.0 if finite else 1.0], dtype=torch.float64)
    dist.all_reduce(t)
    mean = loss if same_on_all else float(t[0]) / dist.get_world_size()
    return mean, bool(t[1] == 0) and math.isfinite(mean)


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (e.g. rank 0's checkpoint clock)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t)
    return bool(t[0] > 0)


def sum_updates(buffer: torch.Tensor, before: torch.Tensor) -> None:
    """Make a buffer that each rank updated from its own samples (center loss's centres)
    equal everywhere: before + the sum of every rank's update."""
    delta = buffer - before
    dist.all_reduce(delta)
    buffer.copy_(before + delta)


def check_in_sync(model: torch.nn.Module) -> float:
    """A checksum of the weights, compared across ranks; raises if any rank differs."""
    with torch.no_grad():
        s = sum(float(p.double().sum()) + float(p.double().abs().sum()) for p in model.parameters())
    sums = [None] * dist.get_world_size()
    dist.all_gather_object(sums, s)
    if any(abs(x - sums[0]) > 1e-9 * max(1.0, abs(sums[0])) for x in sums):
        raise RuntimeError(f"ranks out of sync: weight checksums {sums}")
    return s
