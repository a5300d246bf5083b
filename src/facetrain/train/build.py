"""The pieces a run is made of: its data, schedule, optimizer, starting weights, the model's
input batches and the weights' moving average. `loop.py` assembles them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facetrain import foreign
from facetrain.data.augment import Augment
from facetrain.data.packed import PackedDataset, pack
from facetrain.errors import FacetrainError
from facetrain.inference.feed import prepare
from facetrain.run_folder import CONFIG, WEIGHTS
from facetrain.train import checkpoint
from facetrain.train.schedule import Schedule
from facetrain.train.settings import DataSettings, OptimSettings
from facetrain.train.state import TrainingError

CENTRES = "centers.centers"  # every checkpoint holds them, a row per class, whatever the loss


def dataset_for(settings: DataSettings, run: Path, unlabelled: bool, log=print,
                fits=None) -> PackedDataset:  # fmt: skip
    """Use a pack as is; pack folders or list files into RUN/pack once (resumable). A
    resumed run whose folders changed since goes on with its snapshot, and says so; the
    pack of a start that never trained binds nothing (other data is packed anew).
    `unlabelled`: faces without identities (distillation). `fits`: given the training
    labels as listed, it refuses (raises) settings the data cannot serve before packing."""
    data = settings.paths
    if len(data) == 1 and (Path(data[0]) / "meta.json").exists():
        where = Path(data[0])
    else:
        where = run / "pack"
        if (where / "meta.json").exists():
            snapshot = _snapshot(where)
            if checkpoint.trained(run):
                _say_if_changed(data, snapshot, unlabelled, log)
            else:
                _drop_if_other_data(data, snapshot, unlabelled, log)
        if not (where / "meta.json").exists():
            _pack(data, where, unlabelled, fits)
            _say_skipped(where, log)
    ds = PackedDataset(where, split="train")
    _check_trainable(len(ds), len(ds.labels_held), unlabelled, where)
    return ds


def _pack(data: list[str], where: Path, unlabelled: bool, fits) -> None:
    """Pack the data into `where`, once its listing is seen to be trainable."""
    from facetrain.data.listing import DatasetError

    def listed(labels) -> None:
        _check_trainable(len(labels), len(np.unique(labels)), unlabelled, where)
        if fits is not None:
            fits(labels)

    try:
        pack(data if len(data) > 1 else data[0], where, progress=None, unlabelled=unlabelled,
             before_writing=listed)  # fmt: skip
    except DatasetError as e:
        raise TrainingError(str(e)) from None


def _say_skipped(where: Path, log) -> None:
    """How many images the run's pack could not take, and one of them with why (photos of
    many sizes, say: 111 of 120 left out, where the run then spoke only of its batch)."""
    meta = json.loads((where / "meta.json").read_text())
    if not meta.get("skipped"):
        return
    with open(where / "skipped.tsv", encoding="utf-8") as f:  # its first line alone
        path, _, why = f.readline().rstrip("\n").partition("\t")
    total = meta["images"] + meta["skipped"]
    log(
        f"packed {meta['images']:,} of {total:,} images into {where}; {meta['skipped']:,} "
        f"skipped, each with why in {where / 'skipped.tsv'} (the first: {path}: {why})"
    )


def _check_trainable(images: int, identities: int, unlabelled: bool, where: Path) -> None:
    """Training images, of two identities at least (unless they need none)."""
    if images == 0:
        raise TrainingError(f"{where}: no training images")
    if identities < 2 and not unlabelled:
        raise TrainingError("training needs at least 2 identities")


def head_rows(ds: PackedDataset, run: Path) -> tuple[int, torch.Tensor | None]:
    """How many rows the head and the centres have, and each identity label's row (None:
    the label is the row). A row is kept for each identity the training split holds: one
    held out for validation (a split by identity) could never be named, only pushed away.
    A run begun when every identity of the pack had a row goes on so, to resume exactly."""
    trained = ds.labels_held
    if len(trained) == ds.num_classes or checkpoint.rows_kept(run, CENTRES) == ds.num_classes:
        return ds.num_classes, None
    row_of = torch.full((ds.num_classes,), -1, dtype=torch.long)
    row_of[torch.from_numpy(trained)] = torch.arange(len(trained))
    return len(trained), row_of


def say_if_not_aligned(ds: PackedDataset, record: dict | None, log) -> None:
    """Faces without an alignment record are taken for facetrain's standard 112x112 ones,
    and the model is recorded so: photos are aligned that way when it is used. Faces of
    another size are not those (photos, or crops made elsewhere): say so before training."""
    size = ds.meta.get("image_size")
    if record is None and size is not None and tuple(size) != (112, 112):
        log(f"warning: the training images are {size[0]}x{size[1]} and carry no alignment "
            "record (align_config.json, written by `facetrain align`), so the model is "
            "recorded as trained on 112x112 five-point aligned faces, and photos will be "
            "aligned so when it is used; unless they are such faces, align them first "
            "(`facetrain align DATA ALIGNED`) and train on ALIGNED")  # fmt: skip


def _snapshot(where: Path) -> PackedDataset:
    """The run's own pack of its data, opened; a damaged one named, with the way out."""
    from facetrain.data.packed import PackError

    try:
        return PackedDataset(where, split=None)
    except PackError as e:
        raise TrainingError(f"{e}: the run's snapshot of its data; remove {where} and run "
                            "again to pack the data anew") from None  # fmt: skip


def _drop_if_other_data(data: list[str], snapshot: PackedDataset, unlabelled: bool,
                        log) -> None:  # fmt: skip
    """Remove the pack of a start that stopped before training (a setting refused after
    packing, say) when the data given now lists otherwise: the run trains on the data given,
    not on what an earlier command was given."""
    import shutil

    from facetrain.data.packed import listing_digest

    src = data if len(data) > 1 else data[0]
    if snapshot.meta.get("listing_sha256") != listing_digest(src, unlabelled=unlabelled):
        log(f"{snapshot.path} was packed from other data by a start that never trained: "
            "packed anew")  # fmt: skip
        shutil.rmtree(snapshot.path)


def _say_if_changed(data: list[str], snapshot: PackedDataset, unlabelled: bool, log) -> None:
    """Compare what the data folders list now with what the run's snapshot packed."""
    from facetrain.data.listing import DatasetError
    from facetrain.data.packed import listing_digest

    then, pack_dir = snapshot.meta.get("listing_sha256"), snapshot.path
    src = data if len(data) > 1 else data[0]
    try:
        now = listing_digest(src, unlabelled=unlabelled)
    except DatasetError as e:  # the data moved or deleted since: the snapshot holds it
        log(f"warning: {e}; the run goes on with its snapshot {pack_dir}")
        return
    if then is not None and now != then:
        log(f"warning: the data changed since this run started (files added, removed or "
            f"renamed); it goes on with its snapshot {pack_dir} — start a new run (another "
            "--out) to train on the data as it is now")  # fmt: skip


def build_schedule(cfg: OptimSettings, rates: list | None = None) -> Schedule:
    """The run's learning rate by epoch; `rates`, a schedule file's `[epoch, rate]` lines
    (as the run recorded them: `records.record_rates`)."""
    entries = [tuple(r) for r in rates or ()] if cfg.schedule == "file" else []
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


def build_optimizer(cfg: OptimSettings, params) -> torch.optim.Optimizer:
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


def init_from(source: str, model, objective) -> str:
    """Load a backbone (and the objective's head when its shape fits) from a run or a
    weights file."""
    src, tensors = _weights_of(source)
    _load_backbone(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, src)
    head = objective.head
    head_sd = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
    head_sd = _rows_trained(objective, head_sd)
    if head is not None and head_sd:
        own = head.state_dict()
        if all(k in own and own[k].shape == v.shape for k, v in head_sd.items()):
            head.load_state_dict(head_sd)
            return "backbone and head"
        # softmax → ArcFace/CosFace on the same identities: the softmax weight rows point at
        # the classes, so they start the margin head's centres (a margin loss from random
        # centres can collapse on a small training set)
        rows = head_sd.get("fc.weight")
        rows = None if rows is None else objective.own_rows(rows)
        if rows is not None and set(own) == {"weight"} and own["weight"].shape == rows.shape:
            head.load_state_dict({"weight": rows})
            return "backbone and head (class centres from the softmax weights)"
    return "backbone (head re-created)"


def _weights_of(source: str) -> tuple[Path, dict]:
    """(the file or run folder, its tensors): a run's best checkpoint, else its last."""
    from facetrain.inference import pretrained

    try:
        src = Path(pretrained.resolve(source))
    except FacetrainError as e:
        raise TrainingError(f"init_from: {e}") from None
    if not src.exists():
        raise TrainingError(f"init_from: {src}: no such weights file or run folder")
    if src.is_dir():
        loaded = checkpoint.load(src, "best") or checkpoint.load(src, "last")
        if loaded is None:
            raise TrainingError(f"{src}: no checkpoint to initialise from")
        return src, loaded[0]
    from safetensors.torch import load_file

    try:
        return src, load_file(str(src))
    except Exception as e:  # safetensors' own error types
        raise TrainingError(f"{src}: not a weights file ({e})") from None


def _load_backbone(model, weights: dict, src: Path) -> None:
    """The model's weights from `weights`, or a TrainingError naming what is missing or of
    another shape (another embedding size, say: torch would only raise a RuntimeError)."""
    from facetrain.models.fit import misfit

    why = misfit(model.state_dict(), weights, extra_ok=True)
    if why:
        raise TrainingError(f"{src}: weights that do not fit this run's model ({why}): give "
                            "this run the source's model and embedding_size")  # fmt: skip
    model.load_state_dict(weights, strict=False)


def _rows_trained(objective, head_sd: dict) -> dict:
    """A head saved with a row per identity of the pack (a run begun before the head kept
    rows only for the identities trained on), cut to the rows of those this run trains:
    fine-tuned on the same pack, it keeps what it learnt of each of them."""
    if objective.row_of is None:
        return head_sd
    kept = (objective.row_of.cpu() >= 0).nonzero()[:, 0]  # in row order
    n = len(objective.row_of)
    return {k: v[kept] if v.ndim and len(v) == n else v for k, v in head_sd.items()}


@torch.no_grad()
def centres_from_embeddings(model, objective, ds: PackedDataset, pre, device: str) -> None:
    """A margin head's class centres set to the mean unit embedding of each class: a
    pretrained embedding fine-tuned with ArcFace/CosFace starts from where its classes
    already are, instead of from random centres whose gradients wreck it in a few steps."""
    import torch.nn.functional as F

    model.eval()
    sums = torch.zeros(len(objective.centers.centers), pre.embedding_size)
    for i in range(0, len(ds), 256):
        xb, y = ds.batch(list(range(i, min(i + 256, len(ds)))))
        x = prepare(xb, size=pre.input_size, normalize=pre.normalize, crop=pre.crop).to(device)
        y = objective.rows(y)
        sums.index_add_(0, y, F.normalize(model.embed(x, normalize=False).float(), dim=1).cpu())
    rows = objective.own_rows(F.normalize(sums, dim=1))
    head = objective.head
    head.weight.copy_(rows.to(head.weight.device))
    model.train()


def train_augment(cfg: DataSettings) -> Augment:
    """The training augmentation the settings ask for (data/loader.py applies it)."""
    return Augment(
        flip=cfg.flip,
        crop=cfg.crop or None,
        rotate=cfg.rotate,
        jitter=cfg.color_jitter,
        grayscale=cfg.grayscale,
        normalize=cfg.normalize,
    )


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


def init_record(source: str):
    """The preprocessing record of the model `init_from` names (a run's final weights, a
    weights file or pretrained:NAME), or None where there is none to read (a checkpoint
    folder without final weights, a bare weights file, nothing there)."""
    from facetrain.inference import pretrained
    from facetrain.inference.record import read_record

    if not source:
        return None
    try:
        src = Path(pretrained.resolve(source))
        return read_record(src / WEIGHTS if src.is_dir() else src)
    except (FacetrainError, OSError):
        return None


INIT_SETTINGS = ("model", "embedding_size", "input_size", "normalize")


def init_settings(source: str) -> dict:
    """The settings that shaped the network `init_from` names (`INIT_SETTINGS`): from its
    record, or, for a run with checkpoints and no final weights yet (still training, or
    stopped), from the config.json it started with. Empty where neither can be read."""
    if (theirs := init_record(source)) is not None:
        return {k: getattr(theirs, k) for k in INIT_SETTINGS}
    if not source or not checkpoint.trained(Path(source)):
        return {}
    started, _ = foreign.read_table(Path(source) / CONFIG, "table of settings")
    return {k: started[k] for k in INIT_SETTINGS if k in (started or {})}


def check_init_from(source: str, pre) -> None:
    """A model to start from must be fed as it was trained: the same architecture,
    normalisation, input size and face geometry; otherwise say what to change."""
    theirs = init_record(source)
    if theirs is None:
        return
    wrong = [f"{k}={getattr(theirs, k)!r}" for k in ("model", "normalize", "input_size")
             if getattr(theirs, k) != getattr(pre, k)]  # fmt: skip
    if wrong:
        raise TrainingError(
            f"init_from {source} was trained with {', '.join(wrong)}; set the same "
            f"(--set {' --set '.join(w.replace(chr(39), '') for w in wrong)})"
        )
    if _geometry(theirs.alignment) != _geometry(pre.alignment):
        raise TrainingError(
            f"init_from {source} saw faces aligned as {theirs.alignment}, the data is "
            f"aligned as {pre.alignment}: re-warp the data (`facetrain rewarp DATA OUT "
            f"--model {source}`), then pack and train on OUT"
        )


def _geometry(alignment: dict) -> tuple:
    return (alignment.get("mode", "similarity"), int(alignment.get("size") or 112),
            json_round(alignment.get("template")))  # fmt: skip


def json_round(template) -> tuple | None:
    return None if template is None else tuple(round(float(v), 3) for p in template for v in p)
