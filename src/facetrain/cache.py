"""The cache folder: what facetrain makes once and keeps for every later run — pretrained
weights converted to facetrain's format, the graphs ONNX Runtime runs, `find`'s embeddings
of a folder. Never beside the user's photos; deleting it costs only the time to remake it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$FACETRAIN_CACHE`, else `$XDG_CACHE_HOME/facetrain`, else `~/.cache/facetrain`."""
    env = os.environ.get("FACETRAIN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facetrain"
