"""The registry behind `create_model` (timm-style): each family file registers its
builders with `register_model`; `create_model(name)` builds one with fresh weights."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
DEFAULT_EMBEDDING = {"dlib_resnet": 128}  # a family whose published size is not 512


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    _import_families()
    return sorted(_REGISTRY)


def create_model(name: str, embedding_size: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model with fresh weights, e.g. `create_model("iresnet50",
    embedding_size=512)`. Weights (a run, a file, `pretrained:NAME`) are opened by
    `facetrain.inference.saved.load_model`: this package knows nothing of files."""
    _import_families()
    if embedding_size is None:
        embedding_size = DEFAULT_EMBEDDING.get(name, 512)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](embedding_size=embedding_size, **kwargs)


class Embedder(nn.Module):
    """Base for all families: subclasses define `embed_raw(x) -> (N, D)` prelogits."""

    input_size: int = 112

    def embed_raw(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.embed_raw(x)
        return F.normalize(z, dim=1) if normalize else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x, normalize=True)


class RawEmbedding(nn.Module):
    """`forward` = the wrapped model's raw embeddings (what an exported file computes, and
    what DistributedDataParallel wraps in training; `fn` may be a compiled embed_raw)."""

    def __init__(self, model: nn.Module, fn: Callable | None = None):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fn or self.model.embed_raw)(x)


def _import_families() -> None:
    from facetrain.models import (  # noqa: F401  (registers the models)
        dlib_resnet,
        inception_resnet_v1,
        iresnet,
        mobilefacenet,
        nn4_small2,
    )
