"""Collectives over the ranks of a torch.distributed job, differentiable where a loss needs it.

Partial FC's distributed softmax (losses/partial_fc.py) and the training loop use these; this
module imports nothing of facetrain, so losses need not know about training. Outside a
process group every function is the identity. gloo has no reduce-scatter, so the
all-gather's backward is an all-reduce and a slice.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        world = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
        n = int(max(s.item() for s in sizes))
        padded = torch.zeros((n, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes = [int(s.item()) for s in sizes]
        ctx.rank, ctx.n = dist.get_rank(), n
        return torch.cat([p[:k] for p, k in zip(parts, ctx.sizes)])

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g)
        start = sum(ctx.sizes[: ctx.rank])
        return g[start : start + ctx.sizes[ctx.rank]]


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g)
        return g


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order; gradients flow back to their owners."""
    if not _active():
        return x
    return _AllGather.apply(x)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable (the backward sums the ranks' gradients)."""
    if not _active():
        return x
    return _AllReduceSum.apply(x)


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """Elementwise max over ranks, no gradient (used for numerical stability only)."""
    if not _active():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.MAX)
    return y


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """A row-sharded tensor made whole on every rank (for checkpoints); no gradient."""
    with torch.no_grad():
        return all_gather(x.detach())


def world_of() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
