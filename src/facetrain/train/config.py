"""One dataclass holds every training setting. A run saves it resolved (`RUN/config.json`),
with the code revision, and `--config FILE` (TOML or that JSON) loads one back; CLI flags
given explicitly override the file."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

LOSSES = ("softmax", "arcface", "cosface", "triplet", "contrastive")
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
    eval_distance: str = "euclidean"
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
    freeze_backbone_epochs: int = 0
    threads: int = 0

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"--loss {self.loss!r}: choose from {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer {self.optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError("--amp must be none, bf16 or fp16")
        if self.amp == "fp16" and not self.device.startswith("cuda"):
            raise ValueError("--amp fp16 needs a GPU; use bf16 on a CPU")
        if not 0 < self.keep_probability <= 1:
            raise ValueError("--keep-probability must be in (0, 1]")
        if self.accumulate < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("--accumulate, --batch-size and --epochs must be at least 1")
        if not self.data:
            raise ValueError("no --data given")
        if self.partial_fc and self.loss not in ("arcface", "cosface"):
            raise ValueError("--partial-fc works with --loss arcface or cosface")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError("--sample-rate must be in (0, 1]")
        if self.sample_rate < 1.0 and not self.partial_fc:
            raise ValueError("--sample-rate needs --partial-fc")
        if self.margin_warmup_epochs < 0 or (
            self.margin_warmup_epochs and self.loss not in ("arcface", "cosface")
        ):
            raise ValueError("--margin-warmup-epochs is a number of epochs ≥ 0 for arcface/cosface")


def load_config_file(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    d = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{p}: unknown settings {', '.join(unknown)}")
    if isinstance(d.get("data"), str):
        d["data"] = [d["data"]]
    return d


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
