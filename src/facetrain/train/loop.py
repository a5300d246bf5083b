"""The training loop, readable top to bottom: `setup` assembles a run from its parts, then
every epoch runs its steps, logs, checkpoints and evaluates.

The parts: `objective.py` (head, penalties, miner, margin: the loss), `state.py` (the train
state, checkpoints, the non-finite guard), `evaluator.py` (val split, verification sets,
the saved preprocessing and threshold), `records.py` (revision, config, metrics log),
`build.py` (data, schedule, optimizer, starting weights, input batches, EMA).

Exactness: every step reseeds the global torch RNG and the augmentation/mining generator
from (seed, global step), and batches come from samplers addressed by (epoch, batch), so
a run resumed from a checkpoint replays exactly the computation of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetrain.data.alignment import read_alignment
from facetrain.data.listing import parse_roots
from facetrain.data.loader import TrainLoader
from facetrain.data.packed import PackedDataset
from facetrain.data.sampler import EpochBatches, PKBatches
from facetrain.devices import describe, keep_freed_memory, out_of_memory, within_quota
from facetrain.evaluate.sets import unreadable_sets
from facetrain.models import RawEmbedding, create_model, list_models
from facetrain.progress import counted, progress_bar
from facetrain.run_folder import LOCK, METRICS, REVISION, WEIGHTS, read_rates
from facetrain.train import checkpoint, distributed
from facetrain.train.build import (
    build_optimizer,
    build_schedule,
    centres_from_embeddings,
    check_init_from,
    dataset_for,
    ema_update,
    head_rows,
    init_from,
    say_if_not_aligned,
    train_augment,
)
from facetrain.train.config import code_revision
from facetrain.train.evaluator import (
    Evaluator,
    alignment_record,
    export_weights,
    preprocess_for,
)
from facetrain.train.objective import Objective, build_objective, build_sampler
from facetrain.train.records import (
    MetricsLog,
    check_own,
    check_resume,
    record_config,
    record_machine,
    record_rates,
    record_revision,
    remove_if_unstarted,
    truncate_metrics,
)
from facetrain.train.schedule import read_schedule_file
from facetrain.train.settings import MARGIN_LOSSES, ObjectiveSettings, TrainConfig, idle_settings
from facetrain.train.state import (
    Checkpointer,
    NonFiniteGuard,
    TrainingError,
    TrainState,
    all_finite,
    finite_weights,
)

__all__ = ["TrainingError", "train"]


def train(cfg: TrainConfig, *, log=print) -> dict:
    """Train (or resume) the run in cfg.platform.out; returns the last evaluation metrics.

    Launched by torchrun, every rank runs this function: rank 0 alone writes files and
    verifies, the others wait for it at the points marked `barrier`."""
    cfg.validate()
    # 0: torch's default, no more than a container's CPU quota (torch counts the host's cores)
    torch.set_num_threads(cfg.platform.threads or within_quota(torch.get_num_threads()))
    # recorded as a number: CPU float sums depend on how many threads share them (and on
    # the CPU's kernels: machine.json), so the same run on 1 and 2 threads ends with
    # different figures; config.json says which, and a resume on another count is noted
    cfg = cfg.replace(threads=torch.get_num_threads())
    folder = Path(cfg.platform.out)
    with _room_to_start(folder, "cpu"):  # its network made once, to check the input size
        _check_before_writing(cfg)
    dd, device = distributed.setup(cfg.platform.device)
    if device == "cpu":  # a CPU step's activations, kept for the next (`bench/cpu_memory.py`)
        keep_freed_memory()
    made = dd.main and not folder.exists()
    try:
        with _one_process(folder, dd):
            try:
                with _room_to_start(folder, device):
                    r = setup(cfg.replace(device=device), dd, log if dd.main else _quiet)
            except BaseException:
                if made:  # refused before it packed or trained: no folder left behind
                    remove_if_unstarted(folder)
                raise
            result = r.train()
            # every rank done (rank 0 writes the model last) before any leaves the group: a
            # rank that destroyed its gloo group while another still wrote aborted at exit
            distributed.barrier()
            del r  # DDP's reducer holds the process group: released before it is destroyed
        return result
    finally:
        gc.collect()
        distributed.teardown()


@contextlib.contextmanager
def _room_to_start(folder: Path, device: str):
    """A device out of memory while a run is set up (its network, classifier head,
    optimizer) said as where, that nothing was lost, and what takes less: it was a
    traceback (training's own is said by `Run.out_of_memory`)."""
    try:
        yield
    except RuntimeError as e:  # (torch.OutOfMemoryError is one)
        if not out_of_memory(e):
            raise
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        kept = "its checkpoints are kept" if checkpoint.trained(folder) else "nothing was trained"
        raise TrainingError(
            f"{folder}: out of {device} memory while making the run's network, head and "
            f"optimizer ({cause}); {kept}. Choose a smaller --model or --set embedding_size, "
            "--set partial_fc=true with sample_rate below 1 for a head of many people, or "
            "free the device of other work"
        ) from None


def _one_process(folder: Path, dd):
    """The run folder's lock, held by rank 0 for the whole run: a second `train` on the
    same --out says who is training there and stops, instead of resuming alongside."""
    if not dd.main:
        return contextlib.nullcontext()
    from facetrain.lock import held

    check_own(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return held(folder / LOCK, f"run folder {folder}")


def _quiet(*_):
    pass


@dataclass
class Run:
    """Everything the steps share, built once by `setup`."""

    cfg: TrainConfig
    dd: distributed.Dist
    folder: Path
    data: TrainLoader  # (epoch, batch) → decoded, augmented input batches
    model: torch.nn.Module
    embed_raw: object  # the model's raw embedding (compiled, DDP-wrapped as configured)
    objective: Objective
    params: list
    opt: torch.optim.Optimizer
    schedule: object
    scaler: torch.amp.GradScaler
    ema: torch.nn.Module | None
    state: TrainState
    ckpt: Checkpointer
    evaluator: Evaluator
    pre: object
    guard: NonFiniteGuard
    log: object
    n_backbone: int = 0  # params[:n_backbone] are the backbone's (frozen first, if asked)
    metrics: MetricsLog | None = None
    last_ckpt: float = 0.0
    saved_at: int = -1  # the step of the checkpoint in force (-1: none yet)
    centers_before: torch.Tensor | None = None  # center loss: to sum the ranks' updates
    bar: object = None  # progress: steps, rate, ETA and loss (rank 0's, `progress_bar`)
    task: int = 0

    @property
    def final(self) -> torch.nn.Module:
        """The weights that are evaluated and saved: the moving average when there is one."""
        return self.model if self.ema is None else self.ema

    def train(self) -> dict:
        self.resume()
        if self.done():
            self.log(self.said_done())
            return self.state.last_eval
        self.metrics = MetricsLog(
            self.folder, self.cfg.platform.log_dir, self.state.step, self.dd.main, self.log
        )
        self.evaluator.emit = self.metrics.emit
        self.last_ckpt = time.monotonic()
        self.centers_before = self.objective.centers.centers.clone()
        steps, s = len(self.data), self.state
        if self.dd.main:
            self.log(self.summary())
        with progress_bar(disable=None if self.dd.main else True) as self.bar:
            self.task = self.bar.add_task("train", total=self.cfg.optim.epochs * steps,
                                          completed=s.epoch * steps + s.batch)  # fmt: skip
            try:
                if self.state.eval_due is not None:  # stopped while it verified
                    self.verify_owed()
                while self.state.epoch < self.cfg.optim.epochs:
                    if not self.epoch():  # its schedule file stopped the run
                        break
            except RuntimeError as e:  # (torch.OutOfMemoryError is one)
                if not out_of_memory(e):
                    raise
                raise TrainingError(self.out_of_memory(e)) from None
            finally:
                self.metrics.close()
        return self.finish()

    def out_of_memory(self, e: Exception) -> str:
        """A device out of memory, said as where, that the checkpoints are kept, and what to
        change (torch's own error was a traceback, and said nothing of the run's work)."""
        s, device = self.state, self.cfg.platform.device
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        if s.eval_due is not None:  # its checkpoint is written: a resume verifies first
            return (f"{self.folder}: out of {device} memory while verifying epoch {s.eval_due} "
                    f"({cause}). Its checkpoint at step {s.step} is kept: the same command "
                    "verifies first, before training fills the device again")  # fmt: skip
        parts = 2 * self.cfg.optim.accumulate
        kept = "Its last checkpoint is kept" if self.saved_at >= 0 else "It had no checkpoint yet"
        return (f"{self.folder}: out of {device} memory while training epoch {s.epoch}, step "
                f"{s.step + 1} ({cause}). {kept}: run the same command with --set "
                f"accumulate={parts} (the same batches, in {parts} parts), or free the "
                "device of other work")  # fmt: skip

    def done(self) -> bool:
        """Whether the run has nothing left to do: every epoch trained (or its schedule
        file's stop reached) and verified, and model.safetensors written from its last
        checkpoint. The file is then left as it is — it may hold what was measured since
        (`eval-populations --record`'s sure_below), which writing it again from the
        checkpoint would drop."""
        s = self.state
        written = s.model_written == s.step and (self.folder / WEIGHTS).is_file()
        ended = s.epoch >= self.cfg.optim.epochs or self.schedule(s.epoch) < 0
        return ended and s.eval_due is None and written

    def said_done(self) -> str:
        """A finished run, run again: what it did and how to train it on."""
        if self.schedule(self.state.epoch) < 0:  # (its file may stop it before --epochs)
            did, more = "until its schedule file stopped it", "change the schedule file"
        else:
            did, more = counted(self.state.epoch, "epoch"), "give more --epochs"
        return (
            f"{self.folder}: trained ({did}) and its {WEIGHTS} written, which is left as "
            f"it is; to train on, {more}"
        )

    def summary(self) -> str:
        """What this run trains, on what and how long, said once as it starts: the line a
        reader of a log checks before trusting its figures."""
        cfg, ds, pre = self.cfg, self.data.ds, self.pre
        weights = sum(w.numel() for w in self.model.parameters()) / 1e6
        batch = _batch_said(self.data.sampler, cfg.data.batch_size)
        extras = [f"amp {cfg.platform.amp}"] if cfg.platform.amp != "none" else []
        extras += [f"{self.dd.world} processes"] if self.dd.world > 1 else []
        extras += ["compiled"] if cfg.platform.compile else []
        val, loss = len(self.evaluator.val), cfg.objective.loss
        # a teacher's embeddings are learnt, not identities: its faces need no names
        task = (
            f"to match {cfg.objective.teacher}'s embeddings of {len(ds):,} faces"
            if loss == "distill"
            else f"with {loss} on {len(ds):,} faces of {len(ds.labels_held):,} identities"
        )
        return (f"training {cfg.model.arch} ({weights:.1f}M weights, "
                f"{pre.input_size}×{pre.input_size} in, {pre.embedding_size}-d out) {task}"
                f"{f' ({val:,} held out for validation)' if val else ''}: "
                f"{counted(len(self.data), 'step')} an epoch of {batch}, "
                f"{counted(cfg.optim.epochs, 'epoch')},"
                f" on {cfg.platform.device}{''.join(f', {e}' for e in extras)}")  # fmt: skip

    def resume(self) -> None:
        meta = self.ckpt.load(on_skip=lambda m: self.log(f"warning: {m}"))
        if meta is None:  # (re)starting at step 0: lines of an earlier start would repeat
            if self.dd.main and (self.folder / METRICS).exists():
                truncate_metrics(self.folder, 0)
            return
        s, before = self.state, meta.get("world_size", 1)
        self.saved_at = s.step
        if self.dd.main:  # (a verification cut short is done again: its lines go)
            truncate_metrics(self.folder, s.step, owed=s.eval_due is not None)
        if self.done():  # (said once, by `train`)
            return
        moved = f"; checkpointed with {before} processes, now {self.dd.world}"
        moved = moved if before != self.dd.world else ""
        owed = f"; verifying epoch {s.eval_due} first (it was cut short)"
        owed = owed if s.eval_due is not None else ""
        self.log(f"resuming {self.folder} at epoch {s.epoch}, batch {s.batch} (step {s.step})"
                 f"{moved}{owed}")  # fmt: skip

    def epoch(self) -> bool:
        """The rest of the current epoch: its steps, then its end (evaluation, checkpoint);
        False where the schedule stops the run."""
        cfg, s = self.cfg, self.state
        epoch, steps = s.epoch, len(self.data)
        self.freeze(epoch < cfg.optim.freeze_backbone_epochs)
        self.model.train()
        t0 = time.perf_counter()
        while s.batch < steps:
            at = epoch + s.batch / steps
            lr = self.schedule(at) * s.lr_scale
            if lr < 0:
                self.stop(epoch)
                return False
            for g in self.opt.param_groups:
                g["lr"] = lr
            shown = self.objective.at(at)
            total, extra, finite = self.gradients(epoch, s.batch)
            verdict = self.guard(finite)
            if verdict != "ok":
                rolled_back = self.bad_step(verdict, epoch) == "rolled back"
                self.bar.update(self.task, completed=s.epoch * steps + s.batch)
                if rolled_back:
                    return True
                continue
            self.apply()
            s.loss_sum, s.loss_steps = s.loss_sum + total, s.loss_steps + 1
            s.batch, s.step = s.batch + 1, s.step + 1
            self.bar.update(self.task, note=f"epoch {epoch} loss {total:.4f}")
            self.bar.advance(self.task)
            if s.step % cfg.platform.log_every == 0 or s.batch == steps:
                self.emit({"epoch": epoch, "step": s.step, "loss": total, "lr": lr} | extra | shown)
            self.maybe_checkpoint(epoch, mid_epoch=s.batch < steps)
        self.end_epoch(epoch, time.perf_counter() - t0)
        return True

    def stop(self, epoch: int) -> None:
        """A schedule file's stop ends the run where it is, as its last epoch would: the
        weights it leaves are verified (the model's threshold and the run's figures are
        theirs, not those of the last epoch `eval_every` verified) and checkpointed. The
        run stays at that epoch: its file changed to go on, the same command trains on."""
        s = self.state
        self.log(f"the schedule stops training at epoch {epoch}")
        if s.batch == 0 and epoch % self.cfg.eval.every == 0:  # verified at epoch - 1's end
            return  # (or nothing trained; `finish` marks the checkpoint's model written)
        self.save_and_verify(epoch - 1 if s.batch == 0 else epoch)

    def freeze(self, frozen: bool) -> None:
        """Only the backbone's trainable weights (what is frozen by design stays so)."""
        for p in self.params[: self.n_backbone]:
            p.requires_grad_(not frozen)

    def gradients(self, epoch: int, b: int) -> tuple[float, dict, bool]:
        """One global batch's gradients (in micro-batches); the loss, what to log, and
        whether the step is finite on every process."""
        cfg, dd = self.cfg, self.dd
        seed = (cfg.platform.seed * 1_000_003 + self.state.step) % (2**63)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        idx = self.data.indices(epoch, b)  # the global batch; this rank's part:
        idx = distributed.shard(idx, dd.rank, dd.world) if dd.enabled else idx
        total, extra = 0.0, {}
        for part in np.array_split(np.asarray(idx), cfg.optim.accumulate):
            loss, extra = self.forward(part.tolist(), gen)
            # each micro-batch's mean loss is weighted by its share of the batch
            self.scaler.scale(loss * (len(part) / len(idx))).backward()
            scale = dd.world if self.objective.shared_loss else 1  # log the whole loss
            total += float(loss.detach()) * scale * len(part) / len(idx)
        self.scaler.unscale_(self.opt)
        finite = math.isfinite(total)
        grads = [p.grad for p in self.params if p.grad is not None]
        if finite and grads and not self.scaler.is_enabled():  # fp16: the scaler's business
            finite = all_finite(grads)
        if dd.enabled:  # every rank takes the same decision; log the global mean
            total, finite = distributed.agree(total, finite, self.objective.shared_loss)
        return total, extra, finite

    def forward(self, ids: list[int], gen) -> tuple[torch.Tensor, dict]:
        p = self.cfg.platform
        x, yb = self.data.batch(ids, gen)
        x = x.to(p.device)
        if p.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(p.amp)
        device_type = "cuda" if p.device.startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=amp, enabled=amp is not None):
            raw = self.embed_raw(x)
        return self.objective(raw, self.objective.targets(ids, yb).to(p.device), gen)

    def bad_step(self, verdict: str, epoch: int) -> str:
        """Drop a non-finite step; on 'rollback', go back to the last checkpoint at half
        the learning rate. 'rolled back' or 'skipped'."""
        s = self.state
        self.opt.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.update()  # unscale_ ran: the scaler must close this step too
        self.emit({"epoch": epoch, "step": s.step, "skipped": "nonfinite"})
        if verdict == "skip":
            s.batch, s.step = s.batch + 1, s.step + 1
            return "skipped"
        scale = s.lr_scale
        if self.ckpt.load() is None:
            raise TrainingError(
                f"{self.guard.max_in_a_row} non-finite steps in a row before any checkpoint; "
                "lower lr"
            )
        if not finite_weights(self.ckpt.modules):
            raise TrainingError(
                f"{self.folder}: the last checkpoint (step {s.step}) already holds non-finite "
                "weights; start again with a lower lr"
            )
        s.lr_scale = scale * 0.5
        self.emit({"epoch": s.epoch, "step": s.step, "rollback": True, "lr_scale": s.lr_scale})
        return "rolled back"

    def apply(self) -> None:
        """The optimizer step and what follows it (center sync, EMA)."""
        cfg = self.cfg
        if cfg.optim.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.clip_grad)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        centers = self.objective.centers.centers
        if self.dd.enabled and cfg.objective.center_loss_factor > 0:
            distributed.sum_updates(centers, self.centers_before)
            self.centers_before = centers.clone()
        if self.ema is not None:
            ema_update(self.ema, self.model, cfg.optim.ema_decay, self.state.step)

    def maybe_checkpoint(self, epoch: int, mid_epoch: bool) -> None:
        p, ev, step = self.cfg.platform, self.cfg.eval, self.state.step
        due = p.checkpoint_every_steps and step % p.checkpoint_every_steps == 0
        late = time.monotonic() - self.last_ckpt > 60 * p.checkpoint_minutes
        if ev.every_steps and step % ev.every_steps == 0 and mid_epoch:
            self.save_and_verify(epoch)
        elif distributed.any_rank(bool(due) or late):
            self.save()

    def end_epoch(self, epoch: int, seconds: float) -> None:
        s = self.state
        loss = s.loss_sum / s.loss_steps if s.loss_steps else None
        s.epoch, s.batch, s.loss_sum, s.loss_steps = s.epoch + 1, 0, 0.0, 0
        self.emit({"epoch": epoch, "step": s.step, "epoch_end": True, "loss": loss,
                   "seconds": round(seconds, 2)})  # fmt: skip
        # a line an epoch, in a log too (the bar's own lines come every 30 s at most)
        said = f"mean loss {loss:.4f}" if loss is not None else "no finite step"
        self.log(f"epoch {epoch} step {s.step}: {said} in {seconds:.0f} s "
                 f"({s.epoch}/{self.cfg.optim.epochs} epochs done)")  # fmt: skip
        due = s.epoch % self.cfg.eval.every == 0 or s.epoch == self.cfg.optim.epochs
        if due:
            self.save_and_verify(epoch)
        else:
            self.save()

    def save_and_verify(self, epoch: int) -> None:
        """Checkpoint, marked as owing its verification, then verify: a kill or a failure
        while verifying (a large set, a GPU out of memory) costs the verification, never
        the training before it. A resume verifies first (`verify_owed`)."""
        self.state.eval_due = epoch
        self.save()
        self.verify_owed()

    def verify_owed(self) -> None:
        """The verification the last checkpoint owes, its figures then recorded in it."""
        epoch = self.state.eval_due
        pointers = self.evaluate(epoch)
        self.state.eval_due = None
        self.ckpt.restate(pointers)

    def evaluate(self, epoch: int) -> tuple[str, ...]:
        if not self.dd.main:  # verification runs once, on rank 0
            return ("last",)
        pointers = self.evaluator(self.final, self.objective, self.state, epoch, self.bar)
        self.model.train()
        return pointers

    def save(self, pointers: tuple[str, ...] = ("last",)) -> None:
        """Checkpoint the current step. One already written at this step (a checkpoint due
        at an epoch's last step, then the epoch's end) has these very tensors: its state
        is recorded again, its tensors are not written twice."""
        if self.saved_at == self.state.step:
            self.ckpt.restate(pointers)
        else:
            self.ckpt.save(pointers)
        self.last_ckpt, self.saved_at = time.monotonic(), self.state.step

    def emit(self, line: dict) -> None:
        self.metrics.emit(line)

    def finish(self) -> dict:
        final = self.final
        if not finite_weights({"model": final}):
            raise TrainingError(
                f"{self.folder}: the weights are non-finite at the end of training "
                f"(step {self.state.step}); no model.safetensors written — lower lr"
            )
        if self.dd.enabled:
            digest = distributed.check_in_sync(self.model)
            self.log(f"{self.dd.world} processes finished in sync (weights checksum {digest:.6e})")
        if self.dd.main:
            val = self.evaluator.val
            device = self.cfg.platform.device
            export_weights(self.folder, final, self.pre, device, self.state.last_eval, val)
        if self.saved_at == self.state.step:  # (a schedule's stop may end between checkpoints)
            self.state.model_written = self.state.step
            self.ckpt.restate()
        return self.state.last_eval


def _batch_said(sampler: EpochBatches | PKBatches, asked: int) -> str:
    """A batch's faces; for P×K batches, how they are made up, and where they are not the
    --batch-size asked for, why (K faces of each of P ≥ 2 identities: whole identities)."""
    said = counted(sampler.batch_size, "face")
    if not isinstance(sampler, PKBatches):
        return said
    made = f"{sampler.p} identities × {sampler.k}"
    made += f", + {sampler.extra} of other identities" if sampler.extra else ""
    made += f"; --batch-size {asked} in whole identities" if sampler.batch_size != asked else ""
    return f"{said} ({made})"


def _say_before_training(cfg: TrainConfig, ds: PackedDataset, log) -> None:
    """What the owner should know before a run starts: faces of no known alignment, and
    settings this run will not read."""
    say_if_not_aligned(ds, alignment_record(cfg, ds.path), log)
    for idle in idle_settings(cfg):
        log(f"warning: {idle}")
    size, crop = ds.meta.get("image_size"), cfg.data.crop
    if crop and size and crop >= max(size):  # (FaceNet's 160 of 182: the faces are smaller)
        log(f"warning: crop = {crop} does nothing: the faces are {size[0]}×{size[1]}; a crop "
            "is smaller than them")  # fmt: skip


def _open_run(cfg: TrainConfig, dd: distributed.Dist, log) -> tuple[Path, PackedDataset]:
    """The run folder, checked and recorded, and the training split (packed once)."""
    folder = Path(cfg.platform.out)
    if dd.main:
        check_own(folder)
        check_resume(folder, cfg)
        folder.mkdir(parents=True, exist_ok=True)
        record_revision(folder / REVISION, code_revision())
        if warning := record_config(folder, cfg):
            log(f"warning: {warning}")
        record_machine(folder, describe(cfg.platform.device) | {"processes": dd.world})
        if cfg.optim.schedule == "file":
            record_rates(folder, cfg.optim.schedule_file, log)
    unlabelled = cfg.objective.loss == "distill"  # distillation needs no identities
    if dd.main:  # rank 0 packs, once, after the listing shows the batches fit
        ds = dataset_for(cfg.data, folder, unlabelled, log, fits=lambda y: _sampler(cfg, y, dd))
        _say_before_training(cfg, ds, log)
    distributed.barrier()
    if not dd.main:
        ds = dataset_for(cfg.data, folder, unlabelled)
    return folder, ds


def _start_from(source: str, model, objective, ds: PackedDataset, pre, device: str, log) -> None:
    """Weights to start from (`init_from`): a new margin head starts from the class means
    of the loaded backbone's embeddings."""
    what = init_from(source, model, objective)
    if what.endswith("(head re-created)") and getattr(objective.head, "margin", None):
        centres_from_embeddings(model, objective, ds, pre, device)
        what = "backbone; class centres from its embeddings of the training faces"
    log(f"initialised {what} from {source}")


def _check_batches(cfg: TrainConfig, batch: int, dd: distributed.Dist) -> None:
    """The global batch splits evenly over the processes, and each process's share into
    `accumulate` micro-batches of at least two faces (batch norm's least)."""
    if dd.enabled and cfg.optim.freeze_backbone_epochs:
        raise TrainingError("--freeze-backbone-epochs is not supported with several processes")
    if dd.enabled and batch % dd.world:
        raise TrainingError(f"the global batch ({batch}) must divide evenly over {dd.world} "
                            "processes")  # fmt: skip
    share, parts = batch // dd.world, cfg.optim.accumulate
    if share // parts < 2:
        raise TrainingError(f"accumulate = {parts} cuts a batch of {share} into micro-batches "
                            f"of {share // parts}: batch norm needs at least 2 faces in each "
                            "(a larger batch_size or a smaller accumulate)")  # fmt: skip


def _sampler(cfg: TrainConfig, labels, dd: distributed.Dist) -> EpochBatches | PKBatches:
    """The run's batches of these labels, checked: they fit the data and the processes."""
    sampler = build_sampler(cfg.data, cfg.objective.metric, cfg.platform.seed, labels)
    _check_batches(cfg, sampler.batch_size, dd)
    return sampler


def setup(cfg: TrainConfig, dd: distributed.Dist, log) -> Run:
    """The run folder, data, model, objective, optimizer and bookkeeping of a run."""
    folder, ds = _open_run(cfg, dd, log)
    sampler = _sampler(cfg, ds.labels, dd)
    m, p, device = cfg.model, cfg.platform, cfg.platform.device
    torch.manual_seed(p.seed)
    model = create_model(m.arch, m.embedding_size, dropout=1.0 - m.keep_probability)
    if why := head_unfit(cfg, model):
        log(f"warning: {why}")
    pre = preprocess_for(cfg, m.input_size or model.input_size, ds.path)
    check_init_from(m.init_from, pre)
    teacher = _teacher(cfg.objective, device, dd, ds, folder, log)
    n_rows, row_of = head_rows(ds, folder)
    objective = build_objective(cfg.objective, m.embedding_size, n_rows, dd.world, teacher, row_of)
    model.to(device)
    if p.channels_last:
        model.to(memory_format=torch.channels_last)
    for module in objective.modules().values():
        module.to(device)
    if m.init_from:
        _start_from(m.init_from, model, objective, ds, pre, device, log)
    backbone = [w for w in model.parameters() if w.requires_grad]  # not what is frozen by design
    params = backbone + objective.parameters()
    opt = build_optimizer(cfg.optim, params)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.optim.ema_decay > 0 else None
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler(device_type, enabled=p.amp == "fp16")
    embed_raw = _wrap(p.compile, dd, model, objective)
    state = TrainState()
    modules = {"model": model} | objective.modules() | ({"ema": ema} if ema is not None else {})
    ckpt = Checkpointer(folder, modules, opt, scaler, state, dd, p.out, objective)
    val = PackedDataset(ds.path, split="val")
    evaluator = Evaluator(cfg.eval, pre, val, device, p.out, log, None, ds.labels_held,
                          objective.classifies)  # fmt: skip
    data = TrainLoader(ds, sampler, train_augment(cfg.data), pre.input_size,
                       device if cfg.data.on_device else None)  # fmt: skip
    schedule = build_schedule(cfg.optim, read_rates(folder))  # (every process the same)
    return Run(cfg, dd, folder, data, model, embed_raw, objective, params, opt,
               schedule, scaler, ema, state, ckpt, evaluator, pre,
               NonFiniteGuard(p.max_nonfinite), log, n_backbone=len(backbone))  # fmt: skip


def head_unfit(cfg: TrainConfig, model) -> str | None:
    """Why a margin head may not learn on this network from scratch: its embedding ends in
    a plain linear layer, which at first points every face of a batch the same way, and a
    head that normalises it sees one point (nn4.small2: ArcFace 50.03% on LFW after 5
    epochs, CosFace 73.9%; docs/benchmarks.md, "Feature BN")."""
    loss, arch = cfg.objective.loss, cfg.model.arch
    if loss not in MARGIN_LOSSES or model.embedding_batchnorm or cfg.model.init_from:
        return None
    bn = f"{arch}_bn, which has one, or " if arch + "_bn" in list_models() else ""
    return (
        f"{loss} from scratch on {arch}, whose embedding ends without a BatchNorm, "
        f"collapsed or learnt slowly in facetrain's runs (docs/benchmarks.md, 'Feature "
        f"BN'); train {bn}start from a softmax run (init_from)"
    )


def _check_before_writing(cfg: TrainConfig) -> None:
    """What would fail later, refused before the run folder is touched: verification files
    that are not there, a schedule file that cannot be read, a run folder inside the data,
    weights to start from that are not there, faces whose alignment record no aligner can
    follow, an input size the network cannot take."""
    pairs = [(cfg.eval.pairs, cfg.eval.images)] if cfg.eval.pairs else []
    if why := unreadable_sets(pairs, cfg.eval.bins):
        raise TrainingError("verification set " + "; ".join(why))
    if cfg.optim.schedule == "file":  # read now: a typo in it found before any work
        _check_schedule_file(cfg.optim.schedule_file, Path(cfg.platform.out))
    _check_inputs(cfg)
    model = create_model(cfg.model.arch, cfg.model.embedding_size)
    _check_input_size(model, cfg.model.input_size or model.input_size, cfg.model.arch)


def _check_schedule_file(path: str, run: Path) -> None:
    """A schedule file that can be read, or one gone since the run recorded its rates."""
    try:
        read_schedule_file(path)
    except OSError as e:
        if not (checkpoint.trained(run) and read_rates(run)):
            raise TrainingError(f"schedule_file {path}: {e.strerror or e}") from None
    except ValueError as e:  # it names the file and line
        raise TrainingError(f"schedule_file {e}") from None


def _check_inputs(cfg: TrainConfig) -> None:
    """The data, the weights to start from and the teacher are there, the run folder is not
    inside the data, and the faces' alignment record can be followed. A run that trained
    has its data in its own snapshot (RUN/pack): the folders it was packed from may be
    gone."""
    from facetrain import atomic
    from facetrain.inference.pretrained import is_spec

    out = Path(cfg.platform.out)
    if not (checkpoint.trained(out) and (out / "pack" / "meta.json").exists()):
        parse_roots(cfg.data.paths, loose=cfg.objective.loss == "distill")
    atomic.output_files(cfg.data.paths, **{"--out": cfg.platform.out})
    start = cfg.model.init_from
    if start and not is_spec(start) and not Path(start).exists():
        raise TrainingError(f"init_from: {start}: no such weights file or run folder")
    if cfg.objective.loss == "distill" and cfg.objective.teacher:
        from facetrain.train.teacher import open_teacher

        open_teacher(cfg.objective.teacher)  # one that cannot be opened: said before packing
    for root in cfg.data.paths:
        read_alignment(root)


def _check_input_size(model, size: int, name: str) -> None:
    """A size the network can take (its pooling shrinks the image: too small a one would
    fail at the first step with a kernel-size error)."""
    model.eval()
    try:
        if not _takes(model, size):
            smallest = next((s for s in range(size + 8, 513, 8) if _takes(model, s)), None)
            hint = f"; {smallest} works" if smallest else ""
            raise TrainingError(f"input_size {size} is too small for {name}{hint}")
    finally:
        model.train()


def _takes(model, size: int) -> bool:
    try:
        with torch.no_grad():
            model.embed(torch.zeros(2, 3, size, size), normalize=False)
        return True
    except RuntimeError:
        return False


def _teacher(cfg: ObjectiveSettings, device: str, dd: distributed.Dist, ds, folder: Path, log):
    """Distillation: the teacher's embedding of every training face (main process first,
    into the run folder; the others then read it)."""
    if cfg.loss != "distill":
        return None
    from facetrain.train.teacher import teacher_embeddings

    if dd.main:
        emb = teacher_embeddings(cfg.teacher, ds, folder, device, log)
    distributed.barrier()
    if not dd.main:  # the parts exist now: read, not computed
        emb = teacher_embeddings(cfg.teacher, ds, folder, device, log)
    emb = torch.from_numpy(emb)
    if cfg.distill_center:  # the mean over the faces the teacher could use
        ok = torch.isfinite(emb).all(1)
        emb = torch.nn.functional.normalize(emb - emb[ok].mean(0), dim=1)
    return emb.to(device)


def _wrap(compile_: bool, dd: distributed.Dist, model, objective: Objective):
    """The raw (pre-normalisation) embedding the losses need: compiled when asked, and with
    gradients averaged over processes by DDP (the objective wraps its head as it needs)."""
    embed_raw = torch.compile(model.embed_raw) if compile_ else model.embed_raw
    if not dd.enabled:
        return embed_raw
    from torch.nn.parallel import DistributedDataParallel as DDP

    objective.wrap(DDP)
    return DDP(RawEmbedding(model, embed_raw))
