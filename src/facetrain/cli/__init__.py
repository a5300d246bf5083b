"""The `facetrain` command line: a thin adapter, one module per stage of the pipeline.

Each command parses its arguments, makes one call into the package and prints the result.
Domain errors (`facetrain.errors.FacetrainError`) are caught once, in the app's group, and
printed as one line with exit code 2. Nothing in the package imports this module.

A command imports only its own stage's module (`COMMANDS`): building every command's
options took a fifth of a cold `compare`. `--help`, or a name that is no command, imports
them all; `facetrain.cli.app` is always the whole app.
"""

from __future__ import annotations

import importlib
import sys

STAGES = ("prepare", "train", "evaluate", "use", "library")  # the order `--help` shows
COMMANDS = {  # each top-level command or group, and the stage module that registers it
    **dict.fromkeys(
        ("stats", "align", "prune", "split", "msceleb", "recordio", "rewarp", "pack"), "prepare"
    ),
    **dict.fromkeys(("train", "models"), "train"),
    **dict.fromkeys(("eval", "eval-populations", "plot", "report", "plot-embeddings"), "evaluate"),
    **dict.fromkeys(("embed", "compare", "find", "export", "filter", "classify", "import"), "use"),
    "library": "library",
}

__all__ = ["COMMANDS", "STAGES", "app", "main"]


def load_stages(argv: list[str] | None = None) -> None:
    """Register the commands `argv` needs (its command's stage), or every command."""
    wanted = COMMANDS.get(argv[0]) if argv else None
    for stage in [wanted] if wanted else STAGES:
        importlib.import_module(f"facetrain.cli.{stage}")


def __getattr__(name: str):
    if name == "app":  # the whole app: every stage registered
        load_stages()
        from facetrain.cli.common import app

        return app
    raise AttributeError(name)


def main() -> None:
    load_stages(sys.argv[1:])
    from facetrain.cli.common import app
    from facetrain.progress import console

    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted; run the same command again to resume")
        sys.exit(130)
