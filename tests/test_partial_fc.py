"""Partial FC on 2 CPU processes (gloo) against the full classifier on one."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from facetrain.losses.classification import MarginHead
from facetrain.losses.partial_fc import PartialFC, shard_bounds

C, D, B = 37, 16, 12  # an odd class count: unequal shards


def data():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(C, D, generator=g) * 0.1
    e = torch.randn(B, D, generator=g)
    y = torch.randint(0, C, (B,), generator=g)
    y[0] = y[7] = 36  # a class on the last rank, twice; others spread
    return w, e, y


def reference(kind):
    w, e, y = data()
    head = MarginHead(D, C, kind, s=16.0)
    head.weight.data.copy_(w)
    e = e.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(head(e, y), y)
    loss.backward()
    return float(loss.detach()), head.weight.grad.clone(), e.grad.clone()


def _worker(rank, world, init_file, kind, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        w, e, y = data()
        pfc = PartialFC(D, C, kind, s=16.0, sample_rate=1.0)
        pfc.weight.data.copy_(w[pfc.start : pfc.end])
        part = torch.tensor_split(torch.arange(B), world)[rank]
        mine = e[part].clone().requires_grad_(True)
        loss = pfc(mine, y[part])
        (loss / world).backward()
        torch.save(
            {
                "loss": float(loss.detach()),
                "wgrad": pfc.weight.grad,
                "egrad": mine.grad,
                "part": part,
            },
            f"{out}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_sample_rate_one_equals_the_full_classifier(tmp_path, kind):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), kind, str(tmp_path)), nprocs=2)
    loss, wgrad, egrad = reference(kind)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r, g in enumerate(got):
        assert abs(g["loss"] - loss) < 1e-5, (g["loss"], loss)
        start, end = shard_bounds(C, r, 2)
        torch.testing.assert_close(g["wgrad"], wgrad[start:end], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(g["egrad"], egrad[g["part"]], atol=1e-6, rtol=1e-4)
    assert got[0]["wgrad"].shape[0] + got[1]["wgrad"].shape[0] == C


def test_sampling_keeps_positives_and_trains_only_sampled_rows():
    w, e, y = data()
    pfc = PartialFC(D, C, "arcface", s=16.0, sample_rate=0.5)  # one process: one shard
    pfc.weight.data.copy_(w)
    rows = pfc.sample(y, torch.Generator().manual_seed(1))
    assert set(y.tolist()) <= set(rows.tolist()) and len(rows) == 18
    loss = pfc(e, y, torch.Generator().manual_seed(1))
    loss.backward()
    touched = pfc.weight.grad.abs().sum(1) > 0
    assert torch.nonzero(touched).flatten().tolist() == rows.tolist()  # negatives too
    assert torch.isfinite(loss)


def test_the_objective_restores_its_own_rows_and_their_optimizer_slots_wherever_they_sit():
    """Partial FC owns its checkpoint rows: a process restores its shard of the centres
    and of their optimizer slots, found by the weight itself (it was assumed to be the
    optimizer's last parameter), and leaves every other tensor whole."""
    from facetrain.train.objective import build_objective
    from facetrain.train.settings import ObjectiveSettings

    obj = build_objective(ObjectiveSettings(loss="arcface", partial_fc=True), D, 6)
    head = obj.head
    head.start, head.end = 3, 6  # rank 1 of 2
    head.weight = torch.nn.Parameter(torch.zeros(3, D))
    other = torch.nn.Parameter(torch.zeros(6, D))  # as many rows as there are classes
    opt = torch.optim.SGD([head.weight, other], lr=0.1, momentum=0.9)
    rows = torch.arange(6.0)[:, None].expand(6, D)
    whole = {"head.weight": rows, "optim/0/momentum_buffer": rows,
             "optim/1/momentum_buffer": rows, "model.w": rows}  # fmt: skip
    got = obj.checkpoint_in(whole, opt)
    assert got["head.weight"][:, 0].tolist() == [3.0, 4.0, 5.0]
    assert got["optim/0/momentum_buffer"][:, 0].tolist() == [3.0, 4.0, 5.0]
    assert got["optim/1/momentum_buffer"].shape[0] == 6 and got["model.w"].shape[0] == 6
    assert obj.shared_loss and not obj.classifies
    assert obj.own_rows(rows)[:, 0].tolist() == [3.0, 4.0, 5.0]
