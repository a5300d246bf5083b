"""Where MTCNN's weights are (inside the facenet-pytorch wheel, found without importing
it), and the files the detector's traced networks are kept in: what both the detector and
the PyTorch networks need, without torch."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

NET_FILES = ("pnet.ort", "rnet.ort", "onet.ort")


def weights_folder() -> Path:
    """The facenet-pytorch wheel's folder of MTCNN weights (found, not imported: its import
    pulls in torchvision and its compiler stack, seconds before a first face)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        from facetrain.errors import FacetrainError

        raise FacetrainError("facenet-pytorch is not installed: it carries MTCNN's weights")
    return Path(spec.origin).parent / "data"


def weights_key() -> str:
    """What the traced networks are named by: the weights' content."""
    h = hashlib.sha256()
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        h.update((weights_folder() / name).read_bytes())
    return h.hexdigest()[:16]
