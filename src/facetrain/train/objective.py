"""What a run optimises: the head, the penalties, the miner and the margin ramp, built by one
factory. This is the only place that branches on the loss; the loop calls `objective(raw,
labels, gen)` and gets the loss and what to log with it.

- softmax: a linear head on the prelogits (+ center loss, prelogits norm, label smoothing);
- arcface / cosface: class centres scored by a Margin on unit embeddings, or sharded over
  processes with Partial FC (the collectives sum the ranks' parts of one global loss);
- triplet / contrastive: no head; a miner picks triplets or pairs inside P×K batches;
- distill: no labels; the student's embedding learns the teacher's (cosine distance), and
  optionally the batch's pairwise similarities. When the sizes differ, a learned
  projection (dropped at export) maps the student's embedding to the teacher's size for
  the cosine term, and the similarity term works on the student's own embedding — so the
  saved student keeps its size and still orders faces as the teacher does. With the
  same size (the default for a 128-d teacher) the student's embedding is the teacher's
  space itself: galleries of either model can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.collectives import gather_rows
from facetrain.data.sampler import EpochBatches, PKBatches
from facetrain.losses import (
    CenterLoss,
    Margin,
    MarginHead,
    SoftmaxHead,
    contrastive_loss,
    cross_entropy,
    prelogits_norm,
    triplet_loss,
)
from facetrain.losses.partial_fc import PartialFC
from facetrain.miners import balanced_pairs, mine_triplets
from facetrain.train.schedule import ramp
from facetrain.train.settings import MARGIN_LOSSES, DataSettings, ObjectiveSettings


@dataclass
class Objective:
    """The loss of a batch, by the head of one process (its gradients averaged over the
    processes like the backbone's)."""

    cfg: ObjectiveSettings
    head: nn.Module | None  # None for the metric losses
    centers: CenterLoss
    world: int = 1  # processes; Partial FC's loss is split over them
    teacher: torch.Tensor | None = None  # distill: the teacher's unit embedding of each face
    score: nn.Module | None = None  # the head as the step calls it (DDP-wrapped when shared)
    full_margin: float = 0.0  # what a margin ramp rises to
    extra_modules: dict = field(default_factory=dict)
    row_of: torch.Tensor | None = None  # each identity's row of the head and centres (-1:
    # none: an identity the training split does not hold); None: the identity is the row

    def __post_init__(self):
        self.score = self.score or self.head
        margin = getattr(self.head, "margin", None)
        self.full_margin = margin.m if margin is not None else 0.0

    # the loss is the global batch's, the same on every process (summed by collectives),
    # rather than each process's own (averaged): Partial FC
    shared_loss = False

    @property
    def metric(self) -> bool:
        return self.cfg.metric

    @property
    def ramping(self) -> bool:
        return self.cfg.margin_warmup_epochs > 0  # validate(): only with a margin head

    @property
    def classifies(self) -> bool:
        """Whether the val split can be scored by the head."""
        return self.head is not None and self.teacher is None

    def targets(self, ids: list[int], labels: torch.Tensor) -> torch.Tensor:
        """What the loss compares a batch with: the teacher's embeddings, or the labels."""
        return self.rows(labels) if self.teacher is None else self.teacher[ids]

    def rows(self, labels: torch.Tensor) -> torch.Tensor:
        """The head's (and the centres') rows of identity labels."""
        if self.row_of is None:
            return labels
        if self.row_of.device != labels.device:  # moved once, not each batch
            self.row_of = self.row_of.to(labels.device)
        return self.row_of[labels]

    def modules(self) -> dict[str, nn.Module]:
        """What a checkpoint holds of the objective, by name."""
        d = {"centers": self.centers}
        if self.head is not None:
            d["head"] = self.head
        return d | self.extra_modules

    def parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters()) if self.head is not None else []

    def at(self, epoch: float) -> dict:
        """Set what changes with training time (the margin ramp); what to log of it."""
        if not self.ramping:
            return {}
        self.head.margin.m = ramp(self.full_margin, epoch, self.cfg.margin_warmup_epochs)
        return {"margin": self.head.margin.m}

    def logits(self, raw: torch.Tensor, labels: torch.Tensor, head=None) -> torch.Tensor:
        """The logits (with the margin) of raw embeddings, by the step's head or `head`."""
        x = raw.float() if self.cfg.loss == "softmax" else F.normalize(raw.float(), dim=1)
        return (head or self.score)(x, labels)

    def __call__(self, raw: torch.Tensor, labels: torch.Tensor, gen) -> tuple[torch.Tensor, dict]:
        """The batch's loss and what to log with it (triplets, pairs, accuracy)."""
        if self.teacher is not None:
            return self._distill(raw, labels)  # labels: the teacher's embeddings here
        if self.metric:
            loss, extra = self._metric(F.normalize(raw.float(), dim=1), labels, gen)
        else:
            loss, extra = self._classify(raw, labels, gen)
        return loss + self._penalties(raw, labels), extra

    def wrap(self, ddp) -> None:
        """Several processes: the head's gradients averaged over them as the backbone's."""
        if self.head is not None:
            self.score = ddp(self.head)

    def own_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The class centres (one row a class) this process keeps: all of them."""
        return rows

    def checkpoint_out(self, tensors: dict, opt) -> dict:
        """What a checkpoint holds of this process's tensors (Partial FC: whole rows)."""
        return tensors

    def checkpoint_in(self, tensors: dict, opt) -> dict:
        """What this process restores of a checkpoint's tensors (Partial FC: its rows)."""
        return tensors

    def _metric(self, emb, y, gen):
        c = self.cfg
        if c.loss == "triplet":
            t = mine_triplets(emb, y, c.miner, c.triplet_margin, gen)
            return triplet_loss(emb, t, c.triplet_margin), {"triplets": len(t)}
        pairs, same = balanced_pairs(y, gen)
        return contrastive_loss(emb, pairs, same, c.contrastive_margin), {"pairs": len(pairs)}

    def _distill(self, raw, target):
        ok = torch.isfinite(target).all(1)  # faces the teacher could not use: left out
        own = F.normalize(raw.float(), dim=1)[ok]
        t = target[ok]
        mine = own if self.head is None else F.normalize(self.head(raw.float()[ok]), dim=1)
        cos = (mine * t).sum(1)
        loss = (1.0 - cos).mean() if len(cos) else raw.sum() * 0.0
        if self.cfg.distill_pairwise > 0 and len(cos) > 1:
            gap = own @ own.T - t @ t.T
            loss = loss + self.cfg.distill_pairwise * gap.pow(2).mean()
        return loss, {"cos": float(cos.detach().mean()) if len(cos) else float("nan")}

    def _classify(self, raw, y, gen):
        logits = self.logits(raw, y)
        loss = cross_entropy(logits, y, self.cfg.label_smoothing)
        if self.cfg.loss != "softmax":  # accuracy without the margin: ArcFace's margin
            with torch.no_grad():  # logits put the true class last until late on
                logits = self.head(F.normalize(raw.float(), dim=1))
        return loss, {"acc": float((logits.argmax(1) == y).float().mean())}

    def _penalties(self, raw, y):
        c, total = self.cfg, 0.0
        if c.center_loss_factor > 0:
            total = total + c.center_loss_factor * self.centers(raw.float(), y)
        if c.prelogits_norm_factor > 0:
            total = total + c.prelogits_norm_factor * prelogits_norm(
                raw.float(), c.prelogits_norm_p
            )
        return total


@dataclass
class PartialFCObjective(Objective):
    """ArcFace/CosFace with the class centres sharded over the processes (Partial FC): each
    process scores the global batch against its own rows, the collectives complete the
    softmax, so the loss is the global batch's and its gradients are not averaged. It
    owns what that changes: the gradient scaling, the rows a process keeps, and the rows a
    checkpoint holds whole (so any number of processes can resume it)."""

    shared_loss = True

    @property
    def classifies(self) -> bool:
        return False  # no process holds every centre

    def _classify(self, raw, y, gen):
        x = raw.float()
        if self.world > 1:  # DDP divides the backbone's gradient by the world size
            x.register_hook(lambda g: g * self.world)
        return self.score(x, y, gen) / self.world, {}  # the collectives sum the ranks' parts

    def wrap(self, ddp) -> None:
        pass  # each process's rows are its own: nothing to average

    def own_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return rows[self.head.start : self.head.end]

    def _sharded(self, opt) -> tuple[str, ...]:
        """The checkpoint keys of the rows: the weight and its optimizer slots."""
        params = [p for g in opt.param_groups for p in g["params"]]
        slot = next(i for i, p in enumerate(params) if p is self.head.weight)
        return ("head.weight", f"optim/{slot}/")

    def checkpoint_out(self, tensors: dict, opt) -> dict:
        if self.world == 1:
            return tensors
        keys = self._sharded(opt)
        return {k: gather_rows(v) if k.startswith(keys) else v for k, v in tensors.items()}

    def checkpoint_in(self, tensors: dict, opt) -> dict:
        keys, whole = self._sharded(opt), self.head.num_classes
        return {k: self.own_rows(v) if k.startswith(keys) and v.shape[0] == whole else v
                for k, v in tensors.items()}  # fmt: skip


def build_head(cfg: ObjectiveSettings, embedding_size: int, num_classes: int,
               teacher_size: int = 0) -> nn.Module | None:  # fmt: skip
    if cfg.loss == "distill":  # a projection to the teacher's size, when it differs
        same = teacher_size in (0, embedding_size)
        return None if same else nn.Linear(embedding_size, teacher_size, bias=False)
    if cfg.loss == "softmax":
        return SoftmaxHead(embedding_size, num_classes)
    if cfg.loss not in MARGIN_LOSSES:
        return None
    margin = Margin(cfg.loss, cfg.margin_s, cfg.margin_m)
    if cfg.partial_fc:
        return PartialFC(embedding_size, num_classes, margin, sample_rate=cfg.sample_rate)
    return MarginHead(embedding_size, num_classes, margin)


def build_objective(cfg: ObjectiveSettings, embedding_size: int, num_classes: int,
                    world: int = 1, teacher: torch.Tensor | None = None,
                    row_of: torch.Tensor | None = None) -> Objective:  # fmt: skip
    """`num_classes` rows of head and centres; `row_of`: each identity label's row, where
    the labels are not the rows themselves."""
    head = build_head(cfg, embedding_size, num_classes, 0 if teacher is None else teacher.shape[1])
    centers = CenterLoss(num_classes, embedding_size, cfg.center_loss_alfa)
    kind = PartialFCObjective if cfg.partial_fc else Objective
    return kind(cfg, head, centers, world, teacher=teacher, row_of=row_of)


def build_sampler(data: DataSettings, metric: bool, seed: int, labels) -> EpochBatches | PKBatches:
    """P×K batches for the metric losses (each identity needs a positive), else plain."""
    if metric:
        k = data.images_per_identity
        p = data.identities_per_batch or max(2, (data.batch_size - data.extra_identities) // k)
        return PKBatches(
            labels, p, k, extra=data.extra_identities, seed=seed,
            batches_per_epoch=data.epoch_size,
        )  # fmt: skip
    return EpochBatches(len(labels), data.batch_size, seed=seed, batches_per_epoch=data.epoch_size)
