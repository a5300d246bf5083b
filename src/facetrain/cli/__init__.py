"""The `facetrain` command line: a thin adapter, one module per stage of the pipeline.

Each command parses its arguments, makes one call into the package and prints the result.
Domain errors (`facetrain.errors.FacetrainError`) are caught once, in the app's group, and
printed as one line with exit code 2. Nothing in the package imports this module.
"""

from __future__ import annotations

import sys

# isort: off
# the stages register their commands, in the pipeline's order (which `--help` shows)
from facetrain.cli import prepare, train, evaluate, use, library  # noqa: F401

# isort: on
from facetrain.cli.common import app
from facetrain.progress import console

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted; run the same command again to resume")
        sys.exit(130)
