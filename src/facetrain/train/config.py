"""Every training setting: one dataclass, resolved and checked here before anything is written.

`resolve()` merges, in this order, a config file (TOML, or a run's config.json), the flags
given on the command line, the cloud platforms' folders and `--set KEY=VALUE`; every value
is checked for its type and every choice (model, loss, miner, optimizer, schedule,
normalisation, distance, flip, amp, device) against what exists, with the allowed values
in the error. A run saves the result as `RUN/config.json` with the code revision.
`settings()` lists every setting with its type, default and meaning (`train --list-settings`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from facetrain.errors import FacetrainError

LOSSES = ("softmax", "arcface", "cosface", "triplet", "contrastive", "distill")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)
    out: str = "runs/run"
    model: str = "mobilefacenet"
    loss: str = "softmax"
    embedding_size: int = 128
    input_size: int = 0  # 0: the model's own (96 nn4.small2, 112 iresnet, 160 IRv1)
    epochs: int = 10
    batch_size: int = 64
    epoch_size: int = 0  # batches per epoch (FaceNet's --epoch_size); 0: one full pass
    lr: float = 0.1
    schedule: str = "cosine"
    schedule_file: str = ""
    warmup_epochs: float = 0.0
    lr_steps: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    poly_power: float = 2.0
    min_lr: float = 0.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    keep_probability: float = 1.0  # dropout before the embedding layer = 1 - keep
    ema_decay: float = 0.0
    label_smoothing: float = 0.0
    center_loss_factor: float = 0.0
    center_loss_alfa: float = 0.95
    prelogits_norm_factor: float = 0.0
    prelogits_norm_p: float = 1.0
    margin_s: float = 64.0
    margin_m: float = -1.0  # < 0: the loss's usual margin (ArcFace 0.5, CosFace 0.35)
    margin_warmup_epochs: float = 0.0  # ramp the margin linearly from 0 over these epochs
    partial_fc: bool = False  # arcface/cosface centres sharded over ranks (Partial FC)
    sample_rate: float = 1.0  # Partial FC: share of negative centres scored per step
    triplet_margin: float = 0.2
    miner: str = "semihard"
    contrastive_margin: float = 1.0
    identities_per_batch: int = 0  # P for metric losses; 0: batch_size // images_per_identity
    images_per_identity: int = 4  # K
    extra_identities: int = 0
    flip: bool = True
    crop: int = 0  # random crop size before resizing to the model input (0: none)
    rotate: float = 0.0  # degrees
    color_jitter: float = 0.0  # brightness/contrast/saturation factors in 1 ± this
    grayscale: float = 0.0  # probability
    normalize: str = "fixed"
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    clip_grad: float = 0.0
    accumulate: int = 1
    device: str = "cpu"
    data_on_device: bool = False  # decode (GPU JPEG) and augment batches on --device
    seed: int = 0
    eval_pairs: str = ""  # LFW-format pairs.txt …
    eval_images: str = ""  # … and its image folder
    eval_bins: list[str] = field(default_factory=list)  # InsightFace .bin sets
    eval_flip: str = "sum"  # sum | concat | none: add the flipped image's embedding
    eval_distance: str = "squared_l2"
    eval_subtract_mean: bool = False
    eval_every: int = 1  # epochs
    eval_every_steps: int = 0  # also every N steps (0: off)
    eval_max_pairs: int = 0  # 0: all; otherwise the first N of every fold (faster checks)
    log_every: int = 10
    log_dir: str = ""  # TensorBoard events here instead of RUN/tensorboard
    checkpoint_minutes: float = 10.0
    checkpoint_every_steps: int = 0
    max_nonfinite: int = 5
    init_from: str = ""
    teacher: str = ""  # distill: the MODEL whose embeddings the student learns
    distill_pairwise: float = 0.0  # distill: weight of matching in-batch similarities
    distill_center: bool = False  # distill: learn the teacher's embeddings less their mean
    freeze_backbone_epochs: int = 0
    threads: int = 0

    def __post_init__(self):
        from facetrain.distances import ALIASES

        self.eval_distance = ALIASES.get(self.eval_distance, self.eval_distance)

    def validate(self) -> None:
        """Every value against its type, choices and range; ConfigError names the first
        setting that is wrong and what it may be."""
        for name in FIELDS:
            check_type(name, getattr(self, name))
        _check_choices(self)
        _check_ranges(self)
        if not self.data:
            raise ConfigError("no --data given")
        _check_combinations(self)


class ConfigError(FacetrainError):
    """A setting that does not exist, has the wrong type or is not one of its choices."""


def load_config_file(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """A TOML or JSON file of settings, each checked for its name and type. `base =
    "other.toml"` (relative to the file) starts from another recipe: a file states only
    what it changes."""
    p = Path(path)
    if p.resolve() in _seen:
        raise ConfigError(f"{p}: its `base` recipes form a cycle")
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8")
        d = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: not a readable TOML/JSON settings file ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a table of settings")
    base = d.pop("base", None)
    if isinstance(d.get("data"), str):
        d["data"] = [d["data"]]
    d = {k: check_type(k, v, str(p)) for k, v in d.items()}
    if base is None:
        return d
    if not isinstance(base, str):
        raise ConfigError(f"{p}: base = {base!r}: expected the path of another recipe")
    return load_config_file(p.parent / base, (*_seen, p.resolve())) | d


def code_revision() -> str:
    """git commit of the facetrain source (with '-dirty'), or the package version."""
    src = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from facetrain import __version__

        return f"facetrain {__version__}"


# --- names, types and choices --------------------------------------------------------------

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

HELP = {
    "data": "aligned faces: packs, identity folders or list files (several: one dataset)",
    "out": "run folder; the same folder resumes the run",
    "model": "architecture (`facetrain models`)",
    "loss": "objective",
    "embedding_size": "embedding dimensions",
    "input_size": "model input side in pixels; 0: the model's own",
    "epochs": "passes over the data",
    "batch_size": "images per optimizer step (per process)",
    "epoch_size": "batches per epoch (FaceNet's --epoch_size); 0: one full pass",
    "lr": "peak learning rate",
    "schedule": "learning-rate schedule",
    "schedule_file": "FaceNet-style `epoch: lr` file for schedule=file",
    "warmup_epochs": "linear warm-up from 0 over these epochs",
    "lr_steps": "epochs at which schedule=step multiplies the rate by lr_gamma",
    "lr_gamma": "factor of each step of schedule=step",
    "poly_power": "exponent of schedule=poly",
    "min_lr": "floor of the cosine and poly schedules",
    "optimizer": "optimizer",
    "momentum": "momentum (sgd, rmsprop)",
    "nesterov": "Nesterov momentum (sgd)",
    "weight_decay": "L2 weight decay",
    "keep_probability": "dropout before the embedding layer is 1 - this",
    "ema_decay": "exponential moving average of the weights (0: off)",
    "label_smoothing": "softmax label smoothing",
    "center_loss_factor": "weight of the center loss (softmax; 0: off)",
    "center_loss_alfa": "center update rate of the center loss",
    "prelogits_norm_factor": "weight of the prelogits norm penalty (0: off)",
    "prelogits_norm_p": "order of the prelogits norm",
    "margin_s": "scale of the ArcFace/CosFace logits",
    "margin_m": "ArcFace/CosFace margin; < 0: the loss's usual (0.5 / 0.35)",
    "margin_warmup_epochs": "ramp the margin linearly from 0 over these epochs",
    "partial_fc": "ArcFace/CosFace class centres sharded over processes (Partial FC)",
    "sample_rate": "Partial FC: share of negative centres scored per step",
    "triplet_margin": "triplet loss margin",
    "miner": "triplet miner",
    "contrastive_margin": "contrastive loss margin for different pairs",
    "identities_per_batch": "P of P x K batches; 0: batch_size // images_per_identity",
    "images_per_identity": "K of P x K batches (metric losses)",
    "extra_identities": "identities with one image added to each P x K batch",
    "flip": "random horizontal flips",
    "crop": "random crop to this size before resizing (0: none)",
    "rotate": "random rotation within ± degrees",
    "color_jitter": "brightness/contrast/saturation factors within 1 ± this",
    "grayscale": "probability of a gray image",
    "normalize": "pixel normalisation (saved with the model)",
    "amp": "mixed precision",
    "channels_last": "channels-last memory format",
    "compile": "torch.compile the model",
    "clip_grad": "clip the gradient norm to this (0: off)",
    "accumulate": "micro-batches per optimizer step",
    "device": "where to train",
    "data_on_device": "decode and augment batches on the device",
    "seed": "random seed (same seed, same run)",
    "eval_pairs": "LFW-format pairs.txt checked during training",
    "eval_images": "image folder of eval_pairs",
    "eval_bins": "InsightFace .bin sets checked during training",
    "eval_flip": "how the flipped face joins the embedding in verification",
    "eval_distance": "distance of verification and of the saved threshold",
    "eval_subtract_mean": "subtract the mean embedding (fitted on the other folds)",
    "eval_every": "verify every N epochs",
    "eval_every_steps": "also verify every N steps (0: off)",
    "eval_max_pairs": "0: every pair; N: the first N of every fold",
    "log_every": "log every N steps",
    "log_dir": "TensorBoard events here instead of RUN/tensorboard",
    "checkpoint_minutes": "checkpoint at least this often",
    "checkpoint_every_steps": "also checkpoint every N steps (0: off)",
    "max_nonfinite": "non-finite steps tolerated before rolling back",
    "init_from": "start from a run, a weights file or pretrained:NAME",
    "teacher": "distill: the MODEL (run, file, pretrained:NAME) the student learns from",
    "distill_pairwise": "distill: weight of matching the batch's similarities (0: off)",
    "distill_center": "distill: targets are the teacher's embeddings less their mean, "
    "renormalised (spreads a teacher whose faces sit in a narrow cone)",
    "freeze_backbone_epochs": "train only the head for these first epochs",
    "threads": "CPU threads (0: torch's default)",
}


def _choices() -> dict[str, tuple[str, ...]]:
    """The settings that take one of a known set of values, and those values."""
    from facetrain.data.augment import NORMALIZATIONS
    from facetrain.distances import DISTANCES
    from facetrain.inference.feed import FLIPS
    from facetrain.miners import TRIPLET_MINERS
    from facetrain.models import list_models
    from facetrain.train.schedule import SCHEDULES

    return {
        "model": tuple(list_models()),
        "loss": LOSSES,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "miner": TRIPLET_MINERS,
        "normalize": NORMALIZATIONS,
        "eval_flip": FLIPS,
        "eval_distance": DISTANCES,
        "amp": ("none", "bf16", "fp16"),
    }


def _kind(name: str) -> str:
    t = str(FIELDS[name].type)
    for k in ("list[int]", "list[str]", "bool", "int", "float", "str"):
        if k in t:
            return k
    return "str"  # pragma: no cover - every field has one of the kinds above


def check_type(name: str, value, where: str = "setting"):
    """`value` as setting `name` takes it (an int is a float too), or a ConfigError."""
    if name not in FIELDS:
        raise ConfigError(f"{where}: unknown setting {name!r} (`facetrain train --list-settings`)")
    kind = _kind(name)
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list[int]": lambda v: isinstance(v, list) and all(type(x) is int for x in v),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }[kind]
    if not ok(value):
        raise ConfigError(f"{where}: {name} = {value!r}: expected {kind}")
    return float(value) if kind == "float" else value


def parse_text(name: str, text: str):
    """A `--set KEY=VALUE` value as the setting's type."""
    kind = _kind(name)
    text = text.strip()
    try:
        if kind == "bool":
            low = text.lower()
            if low not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError
            return low in ("1", "true", "yes", "on")
        if kind == "list[int]":
            return [int(x) for x in text.split(",") if x]
        if kind == "list[str]":
            return [x for x in text.split(":") if x]
        return {"int": int, "float": float}.get(kind, str)(text)
    except ValueError:
        raise ConfigError(f"--set {name}={text}: expected {kind}") from None


def _check_choices(cfg: TrainConfig) -> None:

    for name, allowed in _choices().items():
        value = getattr(cfg, name)
        if value not in allowed:
            raise ConfigError(f"{name} = {value!r}: choose from {', '.join(allowed)}")
    from facetrain.devices import check_name

    check_name(cfg.device, "device =")


def _check_combinations(c: TrainConfig) -> None:
    """Settings that only make sense together (or never do)."""
    rules = [
        (c.amp == "fp16" and not c.device.startswith("cuda"),
         "amp fp16 needs a GPU; use bf16 on a CPU"),
        (not 0 < c.keep_probability <= 1, "keep_probability must be in (0, 1]"),
        (c.accumulate < 1 or c.epochs < 1, "accumulate and epochs must be at least 1"),
        (c.batch_size < 2, "batch_size must be at least 2 (batch norm needs two faces)"),
        (any(os.path.abspath(d) == os.path.abspath(c.out) for d in c.data),
         "out must not be one of the data folders"),
        (c.partial_fc and c.loss not in ("arcface", "cosface"),
         "partial_fc works with loss arcface or cosface"),
        (not 0.0 < c.sample_rate <= 1.0, "sample_rate must be in (0, 1]"),
        (c.sample_rate < 1.0 and not c.partial_fc, "sample_rate needs partial_fc"),
        ((c.loss == "distill") != bool(c.teacher), "loss distill and teacher=MODEL go together"),
        (c.margin_warmup_epochs < 0
         or (c.margin_warmup_epochs and c.loss not in ("arcface", "cosface")),
         "margin_warmup_epochs: a number of epochs ≥ 0, for arcface/cosface"),
        (c.distill_pairwise < 0, "distill_pairwise must be ≥ 0"),
    ]  # fmt: skip
    for broken, message in rules:
        if broken:
            raise ConfigError(message)


def _check_ranges(cfg: TrainConfig) -> None:
    import math

    for name in ("lr", "weight_decay", "momentum", "min_lr", "clip_grad", "ema_decay"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"{name} = {v}: must be a finite number ≥ 0")
    for name in ("log_every", "eval_every", "images_per_identity", "max_nonfinite"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} = {getattr(cfg, name)}: must be at least 1")
    for name in ("threads", "epoch_size", "eval_every_steps", "checkpoint_every_steps", "crop"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} = {getattr(cfg, name)}: must be ≥ 0")
    if cfg.input_size and cfg.input_size < 16:
        raise ConfigError(f"input_size = {cfg.input_size}: 0 (the model's own) or at least 16")
    if cfg.embedding_size < 2:
        raise ConfigError(f"embedding_size = {cfg.embedding_size}: must be at least 2")
    if cfg.epochs > MAX_EPOCHS:  # a typo (an extra zero or three), not a plan
        raise ConfigError(f"epochs = {cfg.epochs}: at most {MAX_EPOCHS}")


MAX_EPOCHS = 100_000


@dataclass
class Platform:
    """The cloud training platforms' folders (`--data-dir`, `--output-dir`, `--log-dir`,
    `--num-gpus`): relative data and output paths are taken under them."""

    data_dir: str | None = None
    output_dir: str | None = None
    log_dir: str | None = None
    num_gpus: int | None = None


def _apply_platform(values: dict, p: Platform) -> None:
    if p.data_dir is not None:
        roots = values.get("data") or [""]
        joined = [r if os.path.isabs(r) else os.path.join(p.data_dir, r) for r in roots]
        values["data"] = [r.rstrip("/") for r in joined]
    if p.output_dir is not None:
        o = values.get("out", "run")
        values["out"] = o if os.path.isabs(o) else os.path.join(p.output_dir, o)
    if p.log_dir is not None:
        values["log_dir"] = str(p.log_dir)
    if p.num_gpus is not None:
        values["device"] = "cuda" if p.num_gpus > 0 else "cpu"


def resolve(
    file: str | os.PathLike | None = None,
    flags: dict | None = None,
    platform: Platform | None = None,
    sets: list[str] | None = None,
) -> TrainConfig:
    """The run's settings from a file, flags, platform folders and KEY=VALUE overrides (in
    that order of precedence, last wins), checked completely before anything is written."""
    values = load_config_file(file) if file is not None else {}
    for k, v in (flags or {}).items():
        if v is not None:
            values[k] = check_type(k, v, "flag")
    _apply_platform(values, platform or Platform())
    given = {k for k, v in (flags or {}).items() if v is not None}
    for item in sets or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if key not in FIELDS:
            raise ConfigError(
                f"--set {item!r}: unknown setting {key!r}; KEY=VALUE takes the settings "
                "that `facetrain train --list-settings` lists"
            )
        if key in given and parse_text(key, text) != values[key]:
            raise ConfigError(f"--set {item!r} contradicts --{key.replace('_', '-')} "
                              f"{values[key]!r}: give it once")  # fmt: skip
        values[key] = parse_text(key, text)
    cfg = TrainConfig(**values)
    cfg.validate()
    _check_device(cfg.device, (platform or Platform()).num_gpus)
    return cfg


def _check_device(device: str, num_gpus: int | None) -> None:
    """A CUDA device asked for must exist here (and as many as --num-gpus)."""
    from facetrain.devices import check_device

    check_device(device, "device =")
    if not device.startswith("cuda"):
        return
    import torch

    if num_gpus and num_gpus > torch.cuda.device_count():
        raise ConfigError(f"--num-gpus {num_gpus}: this machine has {torch.cuda.device_count()}")


def settings() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every setting, with its choices where it has some."""
    choices = _choices()
    rows = []
    for name, f in FIELDS.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        meaning = HELP.get(name, "")
        if name in choices:
            meaning += f" ({' | '.join(choices[name])})"
        rows.append((name, _kind(name), json.dumps(default), meaning))
    return rows
