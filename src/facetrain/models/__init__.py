"""Face-embedding networks: a registry and `create_model`, one file per family (timm-style).

Every model maps an RGB batch (N, 3, S, S), normalized as its recipe says, to embeddings.
`model(x)` returns L2-normalised embeddings; `model.embed(x, normalize=False)` returns the
raw pre-normalisation vectors ("prelogits") that softmax heads, center loss and the
prelogits-norm penalty work on. `model.input_size` is the side the model was designed for.

`facetrain.models` itself imports no torch: the registry (`create_model`, `Embedder`, ...)
is loaded on first use, so `facetrain models` and `--help` start in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

_LAZY = ("DEFAULT_EMBEDDING", "Embedder", "RawEmbedding", "register_model")


@dataclass(frozen=True)
class Architecture:
    name: str
    input_size: int
    embedding_size: int
    params: int


# Each registered architecture's design input size, default embedding size and parameter
# count, as `create_model(name)` builds it (tests/test_models.py builds each and checks).
ARCHITECTURES = (
    Architecture("dlib_resnet", 150, 128, 5_614_592),
    Architecture("inception_resnet_v1", 160, 512, 23_482_624),
    Architecture("iresnet100", 112, 512, 65_156_160),
    Architecture("iresnet18", 112, 512, 24_025_600),
    Architecture("iresnet18_050", 112, 512, 9_223_168),
    Architecture("iresnet34", 112, 512, 34_139_328),
    Architecture("iresnet34_050", 112, 512, 11_754_848),
    Architecture("iresnet50", 112, 512, 43_590_848),
    Architecture("mobilefacenet", 112, 512, 1_200_512),
    Architecture("nn4_small2", 96, 512, 4_016_976),
    Architecture("nn4_small2_bn", 96, 512, 4_018_000),
)


def architectures() -> list[Architecture]:
    """Every registered architecture with its design input size and parameter count."""
    return list(ARCHITECTURES)


def create_model(name: str, embedding_size: int | None = None, **kwargs):
    """Build a registered model with fresh weights, e.g. `create_model("iresnet50",
    embedding_size=512)`. Weights (a run, a file, `pretrained:NAME`) are opened by
    `facetrain.inference.saved.load_model`: this package knows nothing of files."""
    from facetrain.models.registry import build

    _import_families()
    return build(name, embedding_size, **kwargs)


def list_models() -> list[str]:
    from facetrain.models.registry import registered

    _import_families()
    return registered()


def _import_families() -> None:
    from facetrain.models import (  # noqa: F401  (each registers its models)
        dlib_resnet,
        inception_resnet_v1,
        iresnet,
        mobilefacenet,
        nn4_small2,
    )


def __getattr__(name: str):
    if name in _LAZY:
        from facetrain.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'facetrain.models' has no attribute {name!r}")
