"""Optional dependencies: what the core install does without, and the message when asked for.

The core install prepares data, trains and evaluates. Three extras add the rest (`make
setup` installs them all): `onnx` (export to and run ONNX files), `tensorboard` (event
files next to metrics.jsonl) and `web` (the library's local web page).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from facetrain.errors import FacetrainError

EXTRAS = {"onnx": "ONNX export and onnxruntime", "tensorboard": "TensorBoard events",
          "web": "the library's web page"}  # fmt: skip


class MissingExtra(FacetrainError):
    """An optional dependency that this use needs is not installed."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'facetrain[{extra}]' (make setup installs every extra)"
        ) from None


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False
