"""The training loop, readable top to bottom: data → model → loss → optimizer → steps, with
checkpoints that resume exactly, verification, and guards against non-finite steps.

Exactness: every step reseeds the global torch RNG and the augmentation/mining generator
from (seed, global step), and batches come from samplers addressed by (epoch, batch), so
a run resumed from a checkpoint replays exactly the computation of an uninterrupted run.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetrain import atomic
from facetrain.data.augment import Augment, apply
from facetrain.data.packed import PackedDataset, pack
from facetrain.data.sampler import EpochBatches, PKBatches
from facetrain.errors import FacetrainError
from facetrain.evaluate.sets import EvalSet, bin_set, pairs_set, prepare, resize, verify
from facetrain.losses import (
    CenterLoss,
    MarginHead,
    SoftmaxHead,
    contrastive_loss,
    cross_entropy,
    prelogits_norm,
    triplet_loss,
)
from facetrain.losses.partial_fc import PartialFC
from facetrain.miners import balanced_pairs, mine_triplets
from facetrain.models import RawEmbedding, create_model
from facetrain.train import checkpoint, distributed
from facetrain.train.config import TrainConfig, code_revision
from facetrain.train.schedule import Schedule, ramp, read_schedule_file

METRIC_LOSSES = ("triplet", "contrastive")


class TrainingError(FacetrainError):
    """A run that cannot start: the message says why."""


# --- setup ----------------------------------------------------------------------------


def dataset_for(cfg: TrainConfig, run: Path) -> PackedDataset:
    """Use a pack as is; pack folders or list files into RUN/pack once (resumable)."""
    data = cfg.data
    if len(data) == 1 and (Path(data[0]) / "meta.json").exists():
        where = Path(data[0])
    else:
        where = run / "pack"
        if not (where / "meta.json").exists():
            from facetrain.data.listing import DatasetError

            try:
                pack(data if len(data) > 1 else data[0], where, progress=None)
            except DatasetError as e:
                raise TrainingError(str(e)) from None
    ds = PackedDataset(where, split="train")
    if len(ds) == 0:
        raise TrainingError(f"{where}: no training images")
    if len(np.unique(ds.labels)) < 2:
        raise TrainingError("training needs at least 2 identities")
    return ds


def build_sampler(cfg: TrainConfig, ds: PackedDataset):
    if cfg.loss in METRIC_LOSSES:
        k = cfg.images_per_identity
        p = cfg.identities_per_batch or max(2, (cfg.batch_size - cfg.extra_identities) // k)
        return PKBatches(
            ds.labels,
            p,
            k,
            extra=cfg.extra_identities,
            seed=cfg.seed,
            batches_per_epoch=cfg.epoch_size,
        )
    return EpochBatches(len(ds), cfg.batch_size, seed=cfg.seed, batches_per_epoch=cfg.epoch_size)


def build_schedule(cfg: TrainConfig) -> Schedule:
    entries = read_schedule_file(cfg.schedule_file) if cfg.schedule == "file" else []
    return Schedule(
        cfg.schedule,
        cfg.lr,
        cfg.epochs,
        cfg.warmup_epochs,
        tuple(cfg.lr_steps),
        cfg.lr_gamma,
        cfg.poly_power,
        cfg.min_lr,
        entries,
    )


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    o, wd = cfg.optimizer, cfg.weight_decay
    if o == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd
        )
    if o == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)
    if o == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd)
    if o == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if o == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=wd)
    return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=wd)


def init_from(cfg: TrainConfig, model, head) -> str:
    """Load a backbone (and the head when its shape fits) from a run or a weights file."""
    from facetrain.models import pretrained

    try:
        src = Path(pretrained.resolve(cfg.init_from))
    except FacetrainError as e:
        raise TrainingError(f"init_from: {e}") from None
    if src.is_dir():
        loaded = checkpoint.load(src, "best") or checkpoint.load(src, "last")
        if loaded is None:
            raise TrainingError(f"{src}: no checkpoint to initialise from")
        tensors = loaded[0]
    else:
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(src))
        except Exception as e:  # safetensors' own error types
            raise TrainingError(f"{src}: not a weights file ({e})") from None
    backbone = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if missing:
        raise TrainingError(f"{src}: not weights of this model (missing {missing[:3]} …)")
    head_sd = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
    if head is not None and head_sd:
        own = head.state_dict()
        if all(k in own and own[k].shape == v.shape for k, v in head_sd.items()):
            head.load_state_dict(head_sd)
            return "backbone and head"
        # softmax → ArcFace/CosFace on the same identities: the softmax weight rows point at
        # the classes, so they start the margin head's centres (a margin loss from random
        # centres can collapse on a small training set)
        rows = head_sd.get("fc.weight")
        if rows is not None and isinstance(head, PartialFC):  # this rank's shard of the rows
            rows = rows[head.start : head.end]
        if rows is not None and set(own) == {"weight"} and own["weight"].shape == rows.shape:
            head.load_state_dict({"weight": rows})
            return "backbone and head (class centres from the softmax weights)"
    return "backbone (head re-created)"


# --- batches and evaluation --------------------------------------------------------------


def to_input(x_uint8: torch.Tensor, cfg: TrainConfig, size: int, train: bool, gen=None):
    """uint8 batch → augmented, resized, normalized float input for the model."""
    aug = Augment(
        flip=cfg.flip and train,
        crop=cfg.crop or None,
        rotate=cfg.rotate,
        jitter=cfg.color_jitter,
        grayscale=cfg.grayscale,
        normalize=cfg.normalize,
    )
    if not train:
        return prepare(x_uint8, size=size, normalize=cfg.normalize, crop=cfg.crop or None)
    return resize(apply(x_uint8, aug, gen), size)


@torch.no_grad()
def validation_split(model, head, val: PackedDataset, cfg: TrainConfig, size: int) -> dict:
    """Loss and top-1 accuracy of the classifier on the pack's val split (same identities)."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(val), 256):
        xb, y = val.batch(list(range(i, min(i + 256, len(val)))))
        x = to_input(xb, cfg, size, train=False).to(cfg.device)
        raw = model.embed(x, normalize=False).float()
        y = y.to(cfg.device)
        logits = head(raw if cfg.loss == "softmax" else F.normalize(raw, dim=1), y)
        total += float(cross_entropy(logits, y)) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    return {"loss": total / n, "accuracy": correct / n}


# --- the run --------------------------------------------------------------------------


def _step_seed(cfg: TrainConfig, step: int) -> int:
    return (cfg.seed * 1_000_003 + step) % (2**63)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint being resumed from."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            pass  # a line cut by a kill
    atomic.write_text(path, "".join(f"{ln}\n" for ln in keep))


SETTINGS = "resumed with settings "


def record_revision(path: Path, revision: str) -> None:
    """The first line is the revision the run started from; a resume with other code adds a
    `resumed with REV` line rather than hiding where the run came from."""
    lines = path.read_text().splitlines() if path.exists() else []
    revisions = [
        line.removeprefix("resumed with ") for line in lines if not line.startswith(SETTINGS)
    ]
    if not lines:
        lines = [revision]
    elif revision not in (revisions[0], revisions[-1]):
        lines.append(f"resumed with {revision}")
    atomic.write_text(path, "\n".join(lines) + "\n")


def record_config(run: Path, cfg: TrainConfig) -> None:
    """config.json is the configuration the run started with. A resume (a checkpoint
    exists) with other settings — more threads, another device — keeps it and adds a
    `resumed with settings KEY=VALUE (was OLD)` line to revision.txt, the run's history."""
    path, new = run / "config.json", dataclasses.asdict(cfg)
    if path.exists() and (run / "checkpoints" / "last").exists():
        old = json.loads(path.read_text())
        changed = [f"{k}={v!r} (was {old.get(k)!r})" for k, v in new.items() if old.get(k) != v]
        hist = run / "revision.txt"
        text = hist.read_text() if hist.exists() else ""
        said = [line for line in text.splitlines() if line.startswith(SETTINGS)]
        line = SETTINGS + ", ".join(changed)
        if changed and line not in said[-1:]:  # resumed again the same way: said already
            atomic.write_text(hist, text + line + "\n")
        return
    atomic.write_text(path, json.dumps(new, indent=2) + "\n")


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """One step of the weights' exponential moving average. The decay warms up as
    (1 + step) / (10 + step) (TensorFlow's num_updates rule) so the random initialisation is
    forgotten within the first few hundred steps: with a flat 0.999 it still held half of the
    average after 700 steps, and those weights next to the live batch-norm statistics
    (copied, not averaged) gave near-constant embeddings."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - d)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def train(cfg: TrainConfig, *, log=print) -> dict:
    """Train (or resume) the run in cfg.out; returns the last evaluation metrics.

    Launched by torchrun, every rank runs this function: rank 0 alone writes files and
    verifies, the others wait for it at the points marked `barrier`."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dd, device = distributed.setup(cfg.device)
    try:
        return _train(cfg, dd, device, log if dd.main else (lambda *_: None))
    finally:
        distributed.teardown()


def _train(cfg: TrainConfig, dd: distributed.Dist, device: str, log) -> dict:
    run = Path(cfg.out)
    if dd.main:
        run.mkdir(parents=True, exist_ok=True)
        record_revision(run / "revision.txt", code_revision())
        record_config(run, cfg)
        ds = dataset_for(cfg, run)  # rank 0 packs, once
    distributed.barrier()
    if not dd.main:
        ds = dataset_for(cfg, run)
    cfg = dataclasses.replace(cfg, device=device)
    sampler = build_sampler(cfg, ds)
    if dd.enabled and cfg.freeze_backbone_epochs:
        raise TrainingError("--freeze-backbone-epochs is not supported with several processes")
    if dd.enabled and sampler.batch_size % dd.world:
        raise TrainingError(
            f"the global batch ({sampler.batch_size}) must divide evenly over {dd.world} processes"
        )
    metric = cfg.loss in METRIC_LOSSES

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, cfg.embedding_size, dropout=1.0 - cfg.keep_probability)
    size = cfg.input_size or model.input_size
    head = None
    if cfg.loss == "softmax":
        head = SoftmaxHead(cfg.embedding_size, ds.num_classes)
    elif cfg.partial_fc:
        m = cfg.margin_m if cfg.margin_m >= 0 else None
        head = PartialFC(
            cfg.embedding_size, ds.num_classes, cfg.loss, cfg.margin_s, m, cfg.sample_rate
        )
    elif cfg.loss in ("arcface", "cosface"):
        m = cfg.margin_m if cfg.margin_m >= 0 else None
        head = MarginHead(cfg.embedding_size, ds.num_classes, cfg.loss, cfg.margin_s, m)
    centers = CenterLoss(ds.num_classes, cfg.embedding_size, cfg.center_loss_alfa)
    model.to(cfg.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    for mod in (head, centers):
        if mod is not None:
            mod.to(cfg.device)
    if cfg.init_from:
        log(f"initialised {init_from(cfg, model, head)} from {cfg.init_from}")
    params = list(model.parameters()) + (list(head.parameters()) if head else [])
    opt = build_optimizer(cfg, [p for p in params if p.requires_grad])
    schedule = build_schedule(cfg)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
    # the raw (pre-normalisation) embedding is what the losses need; compile that
    embed_raw = torch.compile(model.embed_raw) if cfg.compile else model.embed_raw
    score = head
    if dd.enabled:  # gradients averaged over ranks by DDP (Partial FC's shards are not)
        from torch.nn.parallel import DistributedDataParallel as DDP

        embed_raw = DDP(RawEmbedding(model, embed_raw))
        if head is not None and not cfg.partial_fc:
            score = DDP(head)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    device_type = "cuda" if cfg.device.startswith("cuda") else "cpu"
    eval_sets: list[EvalSet] = [bin_set(b) for b in cfg.eval_bins]
    if cfg.eval_pairs:
        eval_sets.insert(0, pairs_set(cfg.eval_pairs, cfg.eval_images, cfg.eval_max_pairs))
    for es in eval_sets:
        if es.missing:
            log(f"verification on {es.name}: {es.missing} pairs name missing images (skipped)")
    val_ds = PackedDataset(ds.path, split="val")

    # state that a checkpoint carries
    state = {"epoch": 0, "batch": 0, "step": 0, "best": -1.0, "lr_scale": 1.0, "last_eval": {}}

    def modules():
        d = {"model": model, "centers": centers}
        if head is not None:
            d["head"] = head
        if ema is not None:
            d["ema"] = ema
        return d

    # Partial FC's rows live on several ranks: checkpoints hold them whole (any rank count
    # can resume), each rank keeps its own slice on load
    sharded = ("head.weight", f"optim/{len(opt.param_groups[0]['params']) - 1}/")
    pfc_rows = (head.start, head.end) if cfg.partial_fc else None

    def save(pointers=("last",)):
        """Every rank calls this (Partial FC gathers); rank 0 writes."""
        tensors = {f"{n}.{k}": v for n, m in modules().items() for k, v in m.state_dict().items()}
        opt_t, opt_rest = checkpoint.flatten_optimizer(opt.state_dict())
        tensors.update(opt_t)
        if pfc_rows and dd.enabled:
            for k in [k for k in tensors if k.startswith(sharded)]:
                tensors[k] = distributed.gather_rows(tensors[k])
        meta = dict(state, optimizer=opt_rest, scaler=scaler.state_dict(), config=cfg.out)
        meta["world_size"] = dd.world
        if dd.main:
            checkpoint.save(run, f"step-{state['step']:08d}", tensors, meta, pointers)
        distributed.barrier()

    def restore(tensors, meta):
        if pfc_rows:
            a, b = pfc_rows
            tensors = {
                k: v[a:b] if k.startswith(sharded) and v.shape[0] == head.num_classes else v
                for k, v in tensors.items()
            }
        for n, m in modules().items():
            m.load_state_dict(
                {k[len(n) + 1 :]: v for k, v in tensors.items() if k.startswith(n + ".")}
            )
        opt.load_state_dict(checkpoint.unflatten_optimizer(tensors, meta["optimizer"]))
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        state.update({k: meta[k] for k in state})

    loaded = checkpoint.load(run)
    if loaded is not None:
        restore(*loaded)
        if dd.main:
            _truncate_metrics(run / "metrics.jsonl", state["step"])
        before = loaded[1].get("world_size", 1)
        log(
            f"resuming {run} at epoch {state['epoch']}, batch {state['batch']} "
            f"(step {state['step']})"
            + (
                f"; checkpointed with {before} processes, now {dd.world}"
                if before != dd.world
                else ""
            )
        )

    from torch.utils.tensorboard import SummaryWriter

    if dd.main:
        events = Path(cfg.log_dir) if cfg.log_dir else run / "tensorboard"
        tb = SummaryWriter(str(events), purge_step=state["step"] or None)
        metrics_file = open(run / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def emit(line: dict) -> None:
        if not dd.main:
            return
        metrics_file.write(json.dumps(line) + "\n")
        metrics_file.flush()
        for k, v in line.items():
            if isinstance(v, int | float) and k not in ("epoch", "step"):
                tag = f"{line['eval']}/{k}" if "eval" in line else f"train/{k}"
                tb.add_scalar(tag, v, line["step"])

    def compute_loss(raw, y, gen):
        emb = F.normalize(raw.float(), dim=1)
        extra = {}
        if metric:
            if cfg.loss == "triplet":
                t = mine_triplets(emb, y, cfg.miner, cfg.triplet_margin, gen)
                loss = triplet_loss(emb, t, cfg.triplet_margin)
                extra["triplets"] = len(t)
            else:
                pr, same = balanced_pairs(y, gen)
                loss = contrastive_loss(emb, pr, same, cfg.contrastive_margin)
                extra["pairs"] = len(pr)
        else:
            if cfg.partial_fc:
                x = raw.float()
                if dd.enabled:  # DDP divides the backbone's gradient by the world size
                    x.register_hook(lambda g: g * dd.world)
                loss = score(x, y, gen) / dd.world  # the collectives sum the ranks' parts
            else:
                logits = score(raw.float() if cfg.loss == "softmax" else emb, y)
                loss = cross_entropy(logits, y, cfg.label_smoothing)
                if cfg.loss != "softmax":  # score without the margin: ArcFace's margin
                    with torch.no_grad():  # logits put the true class last until late on
                        logits = head(emb)
                extra["acc"] = float((logits.argmax(1) == y).float().mean())
        if cfg.center_loss_factor > 0:
            loss = loss + cfg.center_loss_factor * centers(raw.float(), y)
        if cfg.prelogits_norm_factor > 0:
            loss = loss + cfg.prelogits_norm_factor * prelogits_norm(
                raw.float(), cfg.prelogits_norm_p
            )
        return loss, extra

    def evaluate_now(epoch: int) -> tuple[str, ...]:
        """Validation split and verification sets; returns the checkpoint pointers to set."""
        nonlocal result
        pointers: tuple[str, ...] = ("last",)
        if not dd.main:  # verification runs once, on rank 0
            return pointers
        if head is not None and not cfg.partial_fc and len(val_ds):
            v = validation_split(model, head, val_ds, cfg, size)
            emit({"eval": "val_split", "epoch": epoch, "step": state["step"]} | v)
        for k, es in enumerate(eval_sets):
            r = verify(
                ema or model,
                es,
                size=size,
                normalize=cfg.normalize,
                crop=cfg.crop or None,
                flip=cfg.eval_flip,
                device=cfg.device,
                distance=cfg.eval_distance,
                subtract_mean=cfg.eval_subtract_mean,
            )
            emit({"eval": es.name, "epoch": epoch, "step": state["step"]} | r)
            log(
                f"epoch {epoch} step {state['step']}: {es.name} accuracy {r['accuracy']:.4f} "
                f"± {r['accuracy_std']:.4f}, VAL {r['val']:.4f}"
            )
            if k == 0:  # the first set decides "best"
                result = state["last_eval"] = r
                if r["accuracy"] > state["best"]:
                    state["best"] = r["accuracy"]
                    pointers = ("last", "best")
        model.train()
        return pointers

    nonfinite_run = 0
    last_ckpt_time = time.monotonic()
    centers_before = centers.centers.clone()
    steps_per_epoch = len(sampler)
    ramping = cfg.margin_warmup_epochs > 0  # validate(): only with a margin head
    full_margin = head.m if ramping else 0.0  # what the ramp rises to
    result: dict = state.get("last_eval") or {}
    try:
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            freeze = epoch < cfg.freeze_backbone_epochs
            for p in model.parameters():
                p.requires_grad_(not freeze)
            model.train()
            t_epoch, losses = time.perf_counter(), []
            while state["batch"] < steps_per_epoch:
                b = state["batch"]
                at = epoch + b / steps_per_epoch
                lr = schedule(at) * state["lr_scale"]
                if lr < 0:
                    log(f"the schedule stops training at epoch {epoch}")
                    state["epoch"] = cfg.epochs
                    break
                for g in opt.param_groups:
                    g["lr"] = lr
                if ramping:
                    head.m = ramp(full_margin, at, cfg.margin_warmup_epochs)
                seed = _step_seed(cfg, state["step"])
                torch.manual_seed(seed)
                gen = torch.Generator().manual_seed(seed)
                idx = sampler.batch(epoch, b)  # the global batch; this rank's part:
                idx = distributed.shard(idx, dd.rank, dd.world) if dd.enabled else idx
                micro = np.array_split(np.asarray(idx), cfg.accumulate)
                total, extra = 0.0, {}
                for part in micro:
                    xb, yb = ds.batch(part.tolist(), cfg.device if cfg.data_on_device else None)
                    x = to_input(xb, cfg, size, train=True, gen=gen).to(cfg.device)
                    if cfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    y = yb.to(cfg.device)
                    with torch.autocast(
                        device_type, dtype=amp_dtype, enabled=amp_dtype is not None
                    ):
                        raw = embed_raw(x)
                    loss, extra = compute_loss(raw, y, gen)
                    # each micro-batch's mean loss is weighted by its share of the batch
                    scaler.scale(loss * (len(part) / len(idx))).backward()
                    scale = dd.world if cfg.partial_fc else 1  # log the whole loss
                    total += float(loss.detach()) * scale * len(part) / len(idx)
                scaler.unscale_(opt)
                grads = [p.grad for p in params if p.grad is not None]
                finite = math.isfinite(total) and all(torch.isfinite(g).all() for g in grads)
                if dd.enabled:  # every rank takes the same decision; log the global mean
                    total, finite = distributed.agree(total, finite, cfg.partial_fc)
                if not finite:
                    opt.zero_grad(set_to_none=True)
                    nonfinite_run += 1
                    emit({"epoch": epoch, "step": state["step"], "skipped": "nonfinite"})
                    if nonfinite_run >= cfg.max_nonfinite:
                        back = checkpoint.load(run)
                        if back is None:
                            raise TrainingError(
                                f"{nonfinite_run} non-finite steps in a row before any "
                                "checkpoint; lower --lr"
                            )
                        scale = state["lr_scale"]
                        restore(*back)
                        state["lr_scale"] = scale * 0.5
                        nonfinite_run = 0
                        emit(
                            {
                                "epoch": state["epoch"],
                                "step": state["step"],
                                "rollback": True,
                                "lr_scale": state["lr_scale"],
                            }
                        )
                        break
                    state["batch"] += 1
                    state["step"] += 1
                    continue
                nonfinite_run = 0
                if cfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                if dd.enabled and cfg.center_loss_factor > 0:
                    distributed.sum_updates(centers.centers, centers_before)
                    centers_before = centers.centers.clone()
                if ema is not None:
                    ema_update(ema, model, cfg.ema_decay, state["step"])
                losses.append(total)
                state["batch"] += 1
                state["step"] += 1
                if state["step"] % cfg.log_every == 0 or state["batch"] == steps_per_epoch:
                    line = {"epoch": epoch, "step": state["step"], "loss": total, "lr": lr}
                    emit(line | extra | ({"margin": head.m} if ramping else {}))
                due = cfg.checkpoint_every_steps and state["step"] % cfg.checkpoint_every_steps == 0
                mid_epoch = state["batch"] < steps_per_epoch
                if cfg.eval_every_steps and state["step"] % cfg.eval_every_steps == 0 and mid_epoch:
                    save(evaluate_now(epoch))
                    last_ckpt_time = time.monotonic()
                elif distributed.any_rank(
                    bool(due) or time.monotonic() - last_ckpt_time > 60 * cfg.checkpoint_minutes
                ):
                    save()
                    last_ckpt_time = time.monotonic()
            else:  # the epoch finished
                state["epoch"] += 1
                state["batch"] = 0
                emit(
                    {
                        "epoch": epoch,
                        "step": state["step"],
                        "epoch_end": True,
                        "loss": float(np.mean(losses)) if losses else None,
                        "seconds": round(time.perf_counter() - t_epoch, 2),
                    }
                )
                pointers = ("last",)
                if state["epoch"] % cfg.eval_every == 0 or state["epoch"] == cfg.epochs:
                    pointers = evaluate_now(epoch)
                save(pointers)
                last_ckpt_time = time.monotonic()
    finally:
        if dd.main:
            metrics_file.close()
            tb.close()
    if dd.enabled:
        digest = distributed.check_in_sync(model)
        log(f"{dd.world} processes finished in sync (weights checksum {digest:.6e})")
    if dd.main:
        final = model if ema is None else ema
        export_weights(run, final, cfg, size, state["last_eval"] or {}, val_ds)
    return result


def val_threshold(model, val: PackedDataset, cfg: TrainConfig, size: int) -> float | None:
    """A verification threshold validated on the val split's own pairs (for runs without a
    verification set); None when no val identity has two images."""
    from facetrain.evaluate.sets import EvalSet, embed
    from facetrain.evaluate.verification import labelled_threshold

    if len(val) < 2:
        return None
    ids = list(range(len(val)))
    labels = val.batch(ids)[1].tolist()
    if len(set(labels)) == len(labels):
        return None
    none = np.zeros(0, np.int64)
    s = EvalSet("val", len(val), lambda i: list(val.batch(i)[0]), none, none, none, None)
    emb = embed(
        model,
        s,
        size=size,
        normalize=cfg.normalize,
        crop=cfg.crop or None,
        flip=cfg.eval_flip,
        device=cfg.device,
    )
    return labelled_threshold(emb, labels, cfg.eval_distance)


def export_weights(
    run: Path, model, cfg: TrainConfig, size: int, last_eval: dict, val: PackedDataset
) -> Path:
    """RUN/model.safetensors: the final backbone with its preprocessing record."""
    from facetrain.models.saved import Preprocess, save_model

    alignment = {"mode": "similarity", "size": 112}
    for root in cfg.data:  # the settings `facetrain align` recorded, when the data has them
        rec = Path(root) / "align_config.json"
        if rec.exists():
            alignment = json.loads(rec.read_text())
            break
    threshold, source = last_eval.get("threshold"), ""
    if threshold is not None:
        source = "mean best-accuracy threshold over the verification set's folds"
    else:
        threshold = val_threshold(model, val, cfg, size)
        source = "best-accuracy threshold on the val split's pairs" if threshold is not None else ""
    pre = Preprocess(
        model=cfg.model,
        embedding_size=cfg.embedding_size,
        input_size=size,
        normalize=cfg.normalize,
        crop=cfg.crop or None,
        alignment=alignment,
        flip=cfg.eval_flip,
        distance=cfg.eval_distance,
        threshold=threshold,
        threshold_source=source,
    )
    return save_model(run / "model.safetensors", model, pre)
