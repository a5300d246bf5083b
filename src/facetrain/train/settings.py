"""Training settings in six groups, each a small dataclass that checks itself.

A run's settings are `TrainConfig`: data, model, objective, optimisation, evaluation and
platform. Each group lists its settings with their defaults and meanings and checks its
own values (type, choices, range, the combinations inside it); the few rules that join two
groups are `TrainConfig.validate`'s. Functions take the group they use.

Outside, a setting has one flat name — the key of a config file, of `--set KEY=VALUE`, of
a run's config.json and of `--list-settings` (`data`, `model`, `eval_pairs`, …): `KEYS`
maps each to its group and field, so files written before the groups still load.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from facetrain.errors import FacetrainError

LOSSES = ("softmax", "arcface", "cosface", "triplet", "contrastive", "distill")
MARGIN_LOSSES = ("arcface", "cosface")
METRIC_LOSSES = ("triplet", "contrastive")
MAX_INPUT_SIZE = 1024  # pixels a side: face networks take 96 to 224
MAX_EMBEDDING = 8192  # face embeddings have 128 to 512 numbers
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
AMP = ("none", "bf16", "fp16")
MAX_EPOCHS = 100_000


class ConfigError(FacetrainError):
    """Settings that do not exist, have the wrong type or break a rule: every problem found,
    so that a config with three mistakes is not fixed in three runs."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            listed = "".join(f"\n  {p}" for p in problems)
            super().__init__(f"{len(problems)} settings need changing:{listed}")


def _refuse(*found: list[str]) -> None:
    """ConfigError naming every problem found by a group's checks, if any."""
    problems = [p for some in found for p in some]
    if problems:
        raise ConfigError(*problems)


def setting(default, meaning: str, key: str | None = None, within: str | None = None):
    """A field with its meaning (and its flat name when it differs from the field's);
    `within`, for a number, the interval it must lie in, as "[0, 1)" ("inf": no bound, yet
    the number must be finite): every group checks its numbers against theirs."""
    meta = {"help": meaning, "key": key, "within": within}
    meta = {k: v for k, v in meta.items() if v is not None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _at_least(group, names: tuple[str, ...], low: int) -> list[str]:
    return [f"{key_of(group, name)} = {getattr(group, name)}: must be {_least(low)}"
            for name in names if getattr(group, name) < low]  # fmt: skip


def _least(low: int) -> str:
    return "≥ 0" if low == 0 else f"at least {low}"


def _in_ranges(group) -> list[str]:
    """The numbers of the group outside their `within` interval: a value outside would fail
    deep in training, or worse, train without saying (a label smoothing of 1, a NaN
    margin, an EMA that never moves)."""
    out = []
    for f in dataclasses.fields(group):
        within = f.metadata.get("within")
        v = getattr(group, f.name)
        if within and not _inside(v, within):
            out.append(f"{_flat_name(f)} = {v}: must be {interval_said(within)}")
    return out


def _inside(v: float, within: str) -> bool:
    lo, hi = (float(x) for x in within[1:-1].split(","))
    above = v >= lo if within[0] == "[" else v > lo
    below = v <= hi if within[-1] == "]" else v < hi
    return math.isfinite(v) and above and below


def interval_said(within: str) -> str:
    """An interval as a person reads it: "[0, inf)" is "a finite number ≥ 0", a bounded
    one is itself ("in [0, 1)")."""
    lo, hi = (x.strip() for x in within[1:-1].split(","))
    if hi != "inf":
        return f"in {within}"
    return "a finite number" + ("" if lo == "-inf" else f" {'≥>'[within[0] == '(']} {lo}")


def _choose(group) -> list[str]:
    """The settings of the group that have choices and hold none of them."""
    return [f"{key_of(group, name)} = {getattr(group, name)!r}: choose from {', '.join(allowed)}"
            for name, allowed in group.choices().items()
            if getattr(group, name) not in allowed]  # fmt: skip


def _rules(rules: list[tuple[bool, str]]) -> list[str]:
    return [message for broken, message in rules if broken]


@dataclass
class DataSettings:
    """The faces, and how they are batched and augmented."""

    paths: list[str] = setting(
        [], "aligned faces: packs, identity folders or list files (several: one dataset)",
        key="data")  # fmt: skip
    batch_size: int = setting(64, "images per optimizer step, all processes together")
    epoch_size: int = setting(0, "batches per epoch (FaceNet's --epoch_size); 0: one full pass")
    identities_per_batch: int = setting(
        0, "P of P x K batches; 0: batch_size // images_per_identity"
    )
    images_per_identity: int = setting(4, "K of P x K batches (metric losses)")
    extra_identities: int = setting(0, "identities with one image added to each P x K batch")
    flip: bool = setting(True, "random horizontal flips")
    crop: int = setting(0, "random crop to this size before resizing (0: none)")
    rotate: float = setting(0.0, "random rotation within ± degrees", within="[0, 180]")
    color_jitter: float = setting(0.0, "brightness/contrast/saturation factors within 1 ± this",
                                  within="[0, 1]")  # fmt: skip
    grayscale: float = setting(0.0, "probability of a gray image", within="[0, 1]")
    normalize: str = setting("fixed", "pixel normalisation (saved with the model)")
    on_device: bool = setting(False, "decode and augment batches on the device",
                              key="data_on_device")  # fmt: skip

    def choices(self) -> dict[str, tuple]:
        from facetrain.data.augment import NORMALIZATIONS

        return {"normalize": NORMALIZATIONS}

    def validate(self) -> None:
        _refuse(_choose(self), _in_ranges(self), _at_least(self, ("images_per_identity",), 1),
                _at_least(self, ("epoch_size", "crop", "identities_per_batch",
                                 "extra_identities"), 0),
                _rules([(not self.paths, "no --data given"),
                        (self.batch_size < 2, "batch_size must be at least 2 (batch norm "
                                              "needs two faces)")]))  # fmt: skip


@dataclass
class ModelSettings:
    """The network: its architecture, sizes and starting weights."""

    arch: str = setting("mobilefacenet", "architecture (`facetrain models`)", key="model")
    embedding_size: int = setting(128, "embedding dimensions")
    input_size: int = setting(0, "model input side in pixels; 0: the model's own")
    keep_probability: float = setting(1.0, "dropout before the embedding layer is 1 - this",
                                      within="(0, 1]")  # fmt: skip
    init_from: str = setting("", "start from a run, a weights file or pretrained:NAME")

    def choices(self) -> dict[str, tuple]:
        from facetrain.models import list_models

        return {"arch": tuple(list_models())}

    def validate(self) -> None:
        size, width = self.input_size, self.embedding_size  # (larger: memory for a traceback)
        _refuse(_choose(self), _in_ranges(self), _rules([
            (size != 0 and not 16 <= size <= MAX_INPUT_SIZE,
             f"input_size = {size}: 0 (the model's own) or from 16 to {MAX_INPUT_SIZE}"),
            (not 2 <= width <= MAX_EMBEDDING, f"embedding_size = {width}: from 2 to "
             f"{MAX_EMBEDDING}")]))  # fmt: skip


@dataclass
class ObjectiveSettings:
    """What is optimised: the loss, its head, penalties, margin, miner or teacher."""

    loss: str = setting("softmax", "objective")
    label_smoothing: float = setting(0.0, "softmax label smoothing", within="[0, 1)")
    center_loss_factor: float = setting(0.0, "weight of the center loss (0: off)",
                                       within="[0, inf)")  # fmt: skip
    center_loss_alfa: float = setting(0.95, "center update rate of the center loss",
                                     within="[0, 1]")  # fmt: skip
    prelogits_norm_factor: float = setting(
        0.0, "weight of the prelogits norm penalty (0: off)", within="[0, inf)"
    )
    prelogits_norm_p: float = setting(1.0, "order of the prelogits norm", within="(0, inf)")
    margin_s: float = setting(64.0, "scale of the ArcFace/CosFace logits", within="(0, inf)")
    margin_m: float = setting(-1.0, "ArcFace/CosFace margin; < 0: the loss's usual (0.5 / 0.35)",
                             within="(-inf, inf)")  # fmt: skip
    margin_warmup_epochs: float = setting(
        0.0, "ramp the margin linearly from 0 over these epochs", within="[0, inf)"
    )
    partial_fc: bool = setting(
        False, "ArcFace/CosFace class centres sharded over processes (Partial FC)"
    )
    sample_rate: float = setting(1.0, "Partial FC: share of negative centres scored per step",
                                within="(0, 1]")  # fmt: skip
    triplet_margin: float = setting(0.2, "triplet loss margin", within="[0, inf)")
    miner: str = setting("semihard", "triplet miner")
    contrastive_margin: float = setting(1.0, "contrastive loss margin for different pairs",
                                       within="[0, inf)")  # fmt: skip
    teacher: str = setting("", "distill: the MODEL (run, file, pretrained:NAME) the student "
                           "learns from")  # fmt: skip
    distill_pairwise: float = setting(
        0.0, "distill: weight of matching the batch's similarities (0: off)", within="[0, inf)"
    )
    distill_center: bool = setting(
        False,
        "distill: targets are the teacher's embeddings less their mean, renormalised "
        "(spreads a teacher whose faces sit in a narrow cone)",
    )

    @property
    def metric(self) -> bool:
        """A loss on pairs or triplets of the batch (P x K batches, no head)."""
        return self.loss in METRIC_LOSSES

    def choices(self) -> dict[str, tuple]:
        from facetrain.miners import TRIPLET_MINERS

        return {"loss": LOSSES, "miner": TRIPLET_MINERS}

    def validate(self) -> None:
        margin = self.loss in MARGIN_LOSSES
        _refuse(_choose(self), _in_ranges(self), _rules([
            (self.partial_fc and not margin, "partial_fc works with loss arcface or cosface"),
            (self.sample_rate < 1.0 and not self.partial_fc, "sample_rate needs partial_fc"),
            ((self.loss == "distill") != bool(self.teacher),
             "loss distill and teacher=MODEL go together"),
            (self.margin_warmup_epochs and not margin,
             "margin_warmup_epochs: a number of epochs ≥ 0, for arcface/cosface"),
        ]))  # fmt: skip


@dataclass
class OptimSettings:
    """How the weights move: epochs, learning-rate schedule, optimizer and its extras."""

    epochs: int = setting(10, "passes over the data")
    lr: float = setting(0.1, "peak learning rate", within="[0, inf)")
    schedule: str = setting("cosine", "learning-rate schedule")
    schedule_file: str = setting("", "FaceNet-style `epoch: lr` file for schedule=file")
    warmup_epochs: float = setting(0.0, "linear warm-up from 0 over these epochs",
                                  within="[0, inf)")  # fmt: skip
    lr_steps: list[int] = setting([], "epochs at which schedule=step multiplies the rate by "
                                  "lr_gamma")  # fmt: skip
    lr_gamma: float = setting(0.1, "factor of each step of schedule=step", within="[0, inf)")
    poly_power: float = setting(2.0, "exponent of schedule=poly", within="(0, inf)")
    min_lr: float = setting(0.0, "floor of the cosine and poly schedules", within="[0, inf)")
    optimizer: str = setting("sgd", "optimizer")
    momentum: float = setting(0.9, "momentum (sgd, rmsprop)", within="[0, 1)")
    nesterov: bool = setting(False, "Nesterov momentum (sgd)")
    weight_decay: float = setting(5e-4, "L2 weight decay", within="[0, inf)")
    ema_decay: float = setting(0.0, "exponential moving average of the weights (0: off)",
                              within="[0, 1)")  # fmt: skip
    clip_grad: float = setting(0.0, "clip the gradient norm to this (0: off)", within="[0, inf)")
    accumulate: int = setting(1, "micro-batches per optimizer step")
    freeze_backbone_epochs: int = setting(0, "train only the head for these first epochs")

    def choices(self) -> dict[str, tuple]:
        from facetrain.train.schedule import SCHEDULES

        return {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}

    def validate(self) -> None:
        _refuse(_choose(self), _in_ranges(self), _at_least(self, ("freeze_backbone_epochs",), 0),
                _at_least(self, ("accumulate", "epochs"), 1),
                _rules([(self.freeze_backbone_epochs >= self.epochs > 0,
                         f"freeze_backbone_epochs = {self.freeze_backbone_epochs}: fewer than "
                         f"epochs ({self.epochs}), or the network, the model a run saves, "
                         "never trains (only its head would)"),
                        ((self.schedule == "file") != bool(self.schedule_file),
                         "schedule=file and schedule_file=PATH go together"),
                        # a typo (an extra zero or three), not a plan
                        (self.epochs > MAX_EPOCHS,
                         f"epochs = {self.epochs}: at most {MAX_EPOCHS}")]))  # fmt: skip


@dataclass
class EvalSettings:
    """Verification during training, and the distance and flip the saved model keeps."""

    pairs: str = setting("", "LFW-format pairs.txt checked during training", key="eval_pairs")
    images: str = setting("", "image folder of eval_pairs", key="eval_images")
    bins: list[str] = setting([], "InsightFace .bin sets checked during training",
                              key="eval_bins")  # fmt: skip
    flip: str = setting("sum", "how the flipped face joins the embedding in verification",
                        key="eval_flip")  # fmt: skip
    distance: str = setting("squared_l2", "distance of verification and of the saved threshold",
                            key="eval_distance")  # fmt: skip
    subtract_mean: bool = setting(
        False, "subtract the mean embedding (fitted on the other folds)", key="eval_subtract_mean"
    )
    every: int = setting(1, "verify every N epochs", key="eval_every")
    every_steps: int = setting(0, "also verify every N steps (0: off)", key="eval_every_steps")
    max_pairs: int = setting(0, "0: every pair; N: the first N of every fold",
                             key="eval_max_pairs")  # fmt: skip

    def __post_init__(self):
        from facetrain.distances import ALIASES

        self.distance = ALIASES.get(self.distance, self.distance)

    def choices(self) -> dict[str, tuple]:
        from facetrain.distances import DISTANCES
        from facetrain.inference.feed import FLIPS

        return {"flip": FLIPS, "distance": DISTANCES}

    def validate(self) -> None:
        _refuse(_choose(self), _at_least(self, ("every",), 1),
                _at_least(self, ("every_steps", "max_pairs"), 0),  # -1 cut a pair off every fold
                _rules([(bool(self.pairs) != bool(self.images),  # "" would be the folder run in
                         "eval_pairs and eval_images go together (the pairs file and the "
                         "image folder its names refer to)")]))  # fmt: skip


@dataclass
class PlatformSettings:
    """Where and how the run executes: its folder, device, precision, logs and checkpoints."""

    out: str = setting("runs/run", "run folder; the same folder resumes the run")
    device: str = setting("cpu", "where to train")
    threads: int = setting(0, "CPU threads (0: torch's default, within a container's CPU quota)")
    seed: int = setting(0, "random seed (same seed, same run)")
    amp: str = setting("none", "mixed precision")
    channels_last: bool = setting(False, "channels-last memory format")
    compile: bool = setting(False, "torch.compile the model")
    log_every: int = setting(10, "log every N steps")
    log_dir: str = setting("", "TensorBoard events here instead of RUN/tensorboard")
    checkpoint_minutes: float = setting(10.0, "checkpoint at least this often", within="(0, inf)")
    checkpoint_every_steps: int = setting(0, "also checkpoint every N steps (0: off)")
    max_nonfinite: int = setting(5, "non-finite steps tolerated before rolling back")

    def choices(self) -> dict[str, tuple]:
        return {"amp": AMP}

    def validate(self) -> None:
        from facetrain.devices import DeviceError, check_name

        try:
            check_name(self.device, "device =")
            device = []
        except DeviceError as e:
            device = [str(e)]
        _refuse(_choose(self), device, _in_ranges(self),
                _at_least(self, ("log_every", "max_nonfinite"), 1),
                _at_least(self, ("threads", "checkpoint_every_steps", "seed"), 0),
                _rules([(self.amp == "fp16" and not self.device.startswith("cuda"),
                         "amp fp16 needs a GPU; use bf16 on a CPU")]))  # fmt: skip


GROUPS = {"data": DataSettings, "model": ModelSettings, "objective": ObjectiveSettings,
          "optim": OptimSettings, "eval": EvalSettings, "platform": PlatformSettings}  # fmt: skip


def _flat_name(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def key_of(group, name: str) -> str:
    """The flat name of a group's field."""
    return _flat_name(next(f for f in dataclasses.fields(group) if f.name == name))


# flat name → (group, field, dataclasses.Field), in the groups' order
KEYS: dict[str, tuple[str, str, dataclasses.Field]] = {
    _flat_name(f): (g, f.name, f) for g, cls in GROUPS.items() for f in dataclasses.fields(cls)
}


@dataclass
class TrainConfig:
    """Every setting of a run, by group. `TrainConfig.of(epochs=2, …)` builds one from flat
    names; `flat()` gives them back (config.json, `--list-settings`)."""

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    platform: PlatformSettings = field(default_factory=PlatformSettings)

    @classmethod
    def of(cls, **flat) -> TrainConfig:
        """From flat setting names; ConfigError for a name that is no setting."""
        parts: dict[str, dict] = {g: {} for g in GROUPS}
        for k, v in flat.items():
            if k not in KEYS:
                raise ConfigError(unknown_setting(k))
            g, name, _ = KEYS[k]
            parts[g][name] = v
        return cls(**{g: GROUPS[g](**kw) for g, kw in parts.items()})

    def flat(self) -> dict:
        """Every setting by its flat name (what config files and config.json hold)."""
        return {k: getattr(getattr(self, g), name) for k, (g, name, _) in KEYS.items()}

    def get(self, key: str):
        g, name, _ = KEYS[key]
        return getattr(getattr(self, g), name)

    def replace(self, **flat) -> TrainConfig:
        """A copy with some settings changed, by flat name."""
        return TrainConfig.of(**(self.flat() | flat))

    def validate(self) -> None:
        """Every value against its type, then (all of the right type) each group's own rules
        and the rules that join groups; ConfigError names every setting that is wrong and
        what it may be."""
        check_types(self.flat())
        out = os.path.abspath(self.platform.out)
        loss, k = self.objective.loss, self.data.images_per_identity
        _refuse(*(_problems(getattr(self, g).validate) for g in GROUPS),
                _rules([(any(os.path.abspath(d) == out for d in self.data.paths),
                         "out must not be one of the data folders"),
                        # one face a person: no same-person pair, a loss of 0, nothing learnt
                        (loss in METRIC_LOSSES and k < 2,
                         f"images_per_identity = {k}: {loss} needs at least 2 (same-person "
                         "pairs in every batch)")]))  # fmt: skip


def _problems(check, *args) -> list[str]:
    """What a check that raises ConfigError found wrong: nothing, or its problems."""
    try:
        check(*args)
    except ConfigError as e:
        return e.problems
    return []


# Settings read under some choices of another only: moved from their default under another
# choice they change nothing, in silence (a run given lr_steps trained on a cosine).
_PENALISED = ("softmax", *MARGIN_LOSSES, *METRIC_LOSSES)  # every loss but distill
READ_ONLY_WITH: dict[str, tuple[str, tuple[str, ...]]] = {
    "lr_steps": ("schedule", ("step",)),
    "lr_gamma": ("schedule", ("step",)),
    "poly_power": ("schedule", ("poly",)),
    "min_lr": ("schedule", ("cosine", "poly")),
    "momentum": ("optimizer", ("sgd", "rmsprop")),
    "nesterov": ("optimizer", ("sgd",)),
    "label_smoothing": ("loss", ("softmax", *MARGIN_LOSSES)),
    "center_loss_factor": ("loss", _PENALISED),
    "center_loss_alfa": ("loss", _PENALISED),
    "prelogits_norm_factor": ("loss", _PENALISED),
    "prelogits_norm_p": ("loss", _PENALISED),
    "margin_s": ("loss", MARGIN_LOSSES),
    "margin_m": ("loss", MARGIN_LOSSES),
    "triplet_margin": ("loss", ("triplet",)),
    "miner": ("loss", ("triplet",)),
    "contrastive_margin": ("loss", ("contrastive",)),
    "distill_center": ("loss", ("distill",)),
    "images_per_identity": ("loss", METRIC_LOSSES),
    "identities_per_batch": ("loss", METRIC_LOSSES),
    "extra_identities": ("loss", METRIC_LOSSES),
}


def idle_settings(cfg: TrainConfig) -> list[str]:
    """Each setting moved from its default that this run will not read, and why: said
    before training, so that a run is not mistaken for the one its settings describe."""
    default, flat = TrainConfig().flat(), cfg.flat()
    out = []
    for key, (chooser, under) in READ_ONLY_WITH.items():
        if flat[key] != default[key] and flat[chooser] not in under:
            out.append(f"{key} = {flat[key]!r} does nothing with {chooser} {flat[chooser]} "
                       f"(it is read with {chooser} {' or '.join(under)})")  # fmt: skip
    return out


def kind_of(name: str) -> str:
    """bool, int, float, str, list[int] or list[str]: what setting `name` takes."""
    t = str(KEYS[name][2].type)
    for k in ("list[int]", "list[str]", "bool", "int", "float", "str"):
        if k in t:
            return k
    return "str"  # pragma: no cover - every field has one of the kinds above


# the names FaceNet's training scripts and arcface_torch's configs give facetrain's settings
OTHER_TOOLS = {
    "learning_rate": "lr", "max_nrof_epochs": "epochs", "num_epoch": "epochs",
    "model_def": "model", "network": "model", "image_size": "input_size",
    "learning_rate_schedule_file": "schedule_file", "pretrained_model": "init_from",
    "prelogits_norm_loss_factor": "prelogits_norm_factor", "random_flip": "flip",
    "random_crop": "crop", "random_rotate": "rotate", "data_dir": "data", "rec": "data",
    "lfw_pairs": "eval_pairs", "lfw_dir": "eval_images", "val_targets": "eval_bins",
    "logs_base_dir": "log_dir", "models_base_dir": "out", "output": "out", "fp16": "amp",
    "warmup_epoch": "warmup_epochs", "frequent": "log_every",
}  # fmt: skip


def unknown_setting(name: str) -> str:
    """Why `name` is refused, with the setting it most likely meant (a typo, or another
    tool's name for it: FaceNet's, arcface_torch's)."""
    import difflib

    near = [OTHER_TOOLS[name]] if name in OTHER_TOOLS else difflib.get_close_matches(
        name, KEYS, n=1, cutoff=0.7)  # fmt: skip
    if not near:  # a word of a setting's name (`ema` of `ema_decay`)
        near = [k for k in KEYS if name.lower() in k.split("_")][:3]
    meant = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
    return f"unknown setting {name!r}{meant} (`facetrain train --list-settings`)"


def check_types(values: dict, where: str = "setting") -> dict:
    """Every value as its setting takes it (`check_type`), or a ConfigError naming each
    one that is unknown or of the wrong type."""
    checked, problems = typed(values, where)
    _refuse(problems)
    return checked


def typed(values: dict, where: str = "setting") -> tuple[dict, list[str]]:
    """The values as their settings take them, and what is wrong with the others (an
    unknown name, a wrong type): they are left out."""
    checked, problems = {}, []
    for k, v in values.items():
        try:
            checked[k] = check_type(k, v, where)
        except ConfigError as e:
            problems += e.problems
    return checked, problems


def check_type(name: str, value, where: str = "setting"):
    """`value` as setting `name` takes it (an int is a float too), or a ConfigError."""
    if name not in KEYS:
        raise ConfigError(f"{where}: {unknown_setting(name)}")
    kind = kind_of(name)
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
    kind = kind_of(name)
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
