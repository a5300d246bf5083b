"""The registry behind `create_model` (timm-style): each family file registers its
builders with `register_model`, and derives its networks from `Embedder`. It imports no
family: `facetrain.models` imports them before building, so no file imports in a circle."""

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


def build(name: str, embedding_size: int | None = None, **kwargs) -> nn.Module:
    """A registered model with fresh weights (`facetrain.models.create_model` imports the
    families first, so that each has registered itself)."""
    if embedding_size is None:
        embedding_size = DEFAULT_EMBEDDING.get(name, 512)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](embedding_size=embedding_size, **kwargs)


def registered() -> list[str]:
    return sorted(_REGISTRY)


class Embedder(nn.Module):
    """Base for all families: subclasses define `embed_raw(x) -> (N, D)` prelogits."""

    input_size: int = 112
    # the embedding leaves a BatchNorm, centred on the batch: a head that normalises it
    # (ArcFace, CosFace) needs that, or it sees the faces of a batch as one point at first
    embedding_batchnorm: bool = True

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
