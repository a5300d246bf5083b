"""What every command shares: the app, one-line errors, JSON output and the common options."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from facetrain.errors import FacetrainError
from facetrain.progress import console, counted


def plain_help(cmd):
    """Help in plain words: an option's value named as click names it (PATH, INTEGER,
    NUMBER, TEXT, a|b) instead of typer's `<list[str]>`; an argument by its name alone."""
    for p in cmd.params:
        if isinstance(p, TyperOption) and p.metavar is None:
            p.display_type_rich = lambda ctx, p=p: _value_word(p.display_type(ctx))
        elif isinstance(p, TyperArgument):
            if p.metavar is None:
                name = p.name.upper() + ("..." if p.nargs != 1 else "")
                p.metavar = name if p.required else f"[{name}]"
            p.display_type_rich = lambda ctx: None  # the name says what it takes
            p._usage_display_name = lambda p=p: p.metavar  # "{[MODEL] IMAGE...}..." else
    for sub in getattr(cmd, "commands", {}).values():
        plain_help(sub)
    return cmd


def _value_word(typed: str) -> str:
    """click's word for typer's type label: <list[float]> → NUMBER, <path> → PATH."""
    label = typed.strip("<>").removeprefix("list[").removesuffix("]")
    words = {"int": "INTEGER", "float": "NUMBER", "path": "PATH", "file": "PATH", "str": "TEXT"}
    return label if "|" in label else words.get(label.split()[0], "TEXT")


def _threads_for(command: str) -> None:
    """A command that uses a model runs on `devices.inference_threads()`, told to torch
    through OMP_NUM_THREADS before it is imported; `train` keeps its own setting. (Inside
    a process that imported torch already — a test's CliRunner — nothing changes.)"""
    import sys

    from facetrain.devices import inference_threads

    if command != "train" and "torch" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", str(inference_threads()))


class _Group(TyperGroup):
    """Every command runs inside this group: a FacetrainError is one red line, exit 2."""

    def get_command(self, ctx: click.Context, cmd_name: str):
        _threads_for(cmd_name)
        cmd = super().get_command(ctx, cmd_name)
        return None if cmd is None else plain_help(cmd)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FacetrainError as e:
            console.print(f"error: {e}", style="bold red", highlight=False)
            raise typer.Exit(2) from None
        except sqlite3.Error as e:  # a library's file that cannot take what was asked
            console.print(f"error: the library's database: {e}{_then(e)}", style="bold red")
            raise typer.Exit(2) from None
        except BrokenPipeError:  # the reader went (`| head`): a quiet exit 1, as rich does
            # for its own output; stdout goes to /dev/null so the flush at exit fails no more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except OSError as e:  # a full disk, a file taken away mid-command: said, not a trace
            where = f" ({e.filename})" if e.filename else ""
            console.print(f"error: {e.strerror or e}{where}{_then(e)}", style="bold red")
            raise typer.Exit(2) from None


def _then(e: BaseException) -> str:
    """What to do after an error, when the disk is full."""
    from facetrain.atomic import no_room

    if not no_room(e):
        return ""
    return ("; free some space, then run the same command again (a long job goes on from "
            "where it stopped)")  # fmt: skip


app = typer.Typer(
    cls=_Group,
    help="Train face-recognition embedding models end to end, and put them to work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: "[default: the model's]" is not markup
    context_settings={"show_default": True},
)


def _version(value: bool) -> None:
    """The version with the code revision, then what runs it: what a bug report needs
    (the version alone is the same for every commit of a checkout)."""
    if value:
        import platform
        from importlib import metadata

        from facetrain import __version__
        from facetrain.devices import cpu_name
        from facetrain.train.config import code_revision

        rev = code_revision()
        print(f"facetrain {__version__}" + ("" if rev.startswith("facetrain") else f" ({rev})"))
        runs = [f"Python {platform.python_version()}"]
        for package in ("torch", "torchvision", "onnxruntime", "numpy"):
            try:
                runs.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                runs.append(f"no {package}")
        print(", ".join([*runs, f"{platform.system()} {platform.machine()}", cpu_name()]))
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Train face-recognition embedding models end to end, and put them to work."""


Merge = Annotated[
    bool,
    typer.Option("--merge-same-names", help="Same folder name in several roots = one identity."),
]
STDOUT = Path("/dev/stdout")
_KEPT: list = []  # standard output while a command's `--json -` keeps it for the JSON


def _json_alone(ctx: typer.Context, value: Path | None) -> Path | None:
    """`--json -`: the JSON alone on standard output, for a pipe into `jq` or a program; what
    the command prints for people (tables, tab-separated lines) goes to standard error
    until the command ends. The output checks see /dev/stdout, a stream (nothing to make
    beside it); `write_json` writes to the stream kept."""
    if value is None or str(value) != "-":
        return value
    try:
        os.fstat(1)
    except OSError:  # (`>&-`): said as such, not as /dev/stdout's "permission denied"
        raise typer.BadParameter("standard output is closed; give a file") from None
    _KEPT[:] = [sys.stdout]
    sys.stdout = sys.stderr

    def give_back() -> None:
        sys.stdout = _KEPT.pop()

    ctx.call_on_close(give_back)
    return STDOUT


JsonOut = Annotated[
    Path | None,
    typer.Option("--json", callback=_json_alone,
                 help="Also write the result as JSON; `-`: alone on standard output."),
]  # fmt: skip


SHOWN = 20  # the lines of a long list that a command prints; its --json holds them all


def show_first(lines: list[str], more: str, *, tail: str = "", indent: str = "",
               style: str | None = "yellow") -> None:  # fmt: skip
    """The first SHOWN `lines`, then how many were not printed: `… and 5 more files to look
    at` (`more`: the noun for one, "more file"; `tail`: the words after it)."""
    for line in lines[:SHOWN]:
        console.print(f"{indent}{line}", style=style, highlight=False)
    if len(lines) > SHOWN:
        left = counted(len(lines) - SHOWN, more)
        console.print(f"{indent}… and {left}{tail}", style=style, highlight=False)


def fail(message: str, code: int = 2) -> None:
    """Print a clear one-line error and exit (2 = unusable arguments)."""
    console.print(f"error: {message}", style="bold red", highlight=False)
    raise typer.Exit(code)


def write_json(path: Path | None, obj) -> None:
    if path is None:
        return
    text = json.dumps(obj, indent=2, default=str) + "\n"
    if _KEPT and path == STDOUT:  # `--json -`
        _KEPT[0].write(text)
        _KEPT[0].flush()
        return
    from facetrain import atomic

    atomic.write_text(path, text)


MODEL_HELP = (
    "a run folder, model.safetensors, an exported .onnx / .pt file or pretrained:NAME "
    "(`facetrain models`); left out: pretrained:dlib_resnet"
)
ModelArg = Annotated[str, typer.Argument(help=f"The model: {MODEL_HELP}.")]
INPUTS_HELP = "[MODEL] then identity folders, list files or a pack (MODEL: `facetrain models`)."
OptionalModelArg = Annotated[str | None, typer.Argument(help=f"The model: {MODEL_HELP}.")]
SpecOpt = Annotated[
    Path | None,
    typer.Option("--preprocess", help="JSON preprocessing spec for a model made elsewhere."),
]
AlignOpt = Annotated[
    str,
    typer.Option(help="auto: align photos that are not the model's aligned size; always; never."),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")]


def open_model_arg(model: str | None, device: str = "cpu", backend: str = "auto",
                   spec: Path | None = None, torch: bool = False):  # fmt: skip
    """The model (None: the default pretrained model, said once), or a clear error; for
    embedding faces it may be compiled (`inference.compiled`), `torch` asks for the
    PyTorch model (evaluation, export)."""
    from facetrain.inference.compiled import open_for_use
    from facetrain.inference.pretrained import DEFAULT
    from facetrain.inference.saved import open_model, read_spec

    if model is None:
        console.print(f"model: {DEFAULT} (the default; give a MODEL to use another)")
        model = DEFAULT
    opener = open_model if torch else open_for_use
    return opener(model, device, backend, read_spec(spec) if spec else None)


def model_and_inputs(args: list[str], device: str, backend: str = "auto", spec=None):
    """[MODEL] INPUTS...: the opened model and the inputs (see models.saved.split_model)."""
    from facetrain.inference.saved import split_model

    model, rest = split_model(args)
    return open_model_arg(model, device, backend, spec), rest


PhotoWorkersOpt = Annotated[
    int,
    typer.Option(
        help="Processes reading photos: 0 chooses (on a CPU, one a core from 24 photos "
        "on, as many as the memory holds; else this process alone)."
    ),
]


def _reading_threads(workers: int) -> int:
    """--workers of a command reading images for one model: the threads it chooses for 0,
    or its one-line error (as a library command's) before anything is read."""
    from facetrain.inference.sources import reading_threads

    try:
        return reading_threads(workers)
    except ValueError as e:
        fail(str(e))


WorkersOpt = Annotated[
    int,
    typer.Option(
        help="Threads reading (decoding, aligning) images ahead of the model: 0 chooses "
        "(as many as the model runs on).",
        callback=_reading_threads,
    ),
]


@contextlib.contextmanager
def work_towards(out: Path | None, *job):
    """The folder beside the output `out` where embeddings made for it are kept while the
    command runs (`inference.parts`): gone when the command ends, done or refused; kept
    when it is interrupted, for the same command to go on from. No output, or one that is
    a stream (`--json /dev/stdout`: no folder to keep work beside): with `job` (the
    command's name and inputs), a folder of the cache's `work/` (`kept_in_cache`); else
    None, no work kept."""
    from facetrain.atomic import is_stream
    from facetrain.inference.parts import kept_in_cache, kept_until_done, parts_for

    if out is not None and not is_stream(out):
        parts = parts_for(out)
    else:
        parts = kept_in_cache(*job) if job else None
    with kept_until_done(parts):
        yield parts


def embed_data(fm, data: list[str], align: str, device: str, workers: int = 0,
               parts: Path | None = None, identities: int | None = None):  # fmt: skip
    """Embed DATA roots, reporting skipped images; exits cleanly when nothing is usable.
    `workers`: threads reading ahead, 0 chooses (`reading_threads`); `parts`: where the
    work is kept as it goes (`work_towards`); `identities`: only the first that many by
    name."""
    from facetrain.data.listing import DatasetError
    from facetrain.use.embeddings import embed_dataset

    threads = _reading_threads(workers)
    try:
        t = embed_dataset(fm, data, align=align, device=device, workers=threads, parts=parts,
                          identities=identities)  # fmt: skip
    except (DatasetError, ValueError) as e:
        fail(str(e))
    return _usable(t, data)


def faces_of_data(fm, data: list[str], align: str, device: str, parts: Path | None = None):
    """DATA roots' photos of one face as a table, and their group photos apart (see
    `use.embeddings.photo_table`); skipped images reported. `parts`: where the work is
    kept as it goes (`work_towards`). The people's names are checked before any embedding."""
    from facetrain.data.listing import DatasetError, Problems, iter_samples
    from facetrain.use.classify import check_people
    from facetrain.use.embeddings import faces_in_photos, photo_table

    try:
        samples = list(iter_samples(data, problems=Problems()))
    except (DatasetError, ValueError) as e:
        fail(str(e))
    check_people(s.identity for s in samples)
    photos = faces_in_photos(fm, [s.path for s in samples], align=align, device=device,
                             parts=parts)  # fmt: skip
    t, groups = photo_table(fm, photos, [s.identity for s in samples])
    return _usable(t, data), groups


def _usable(t, data: list[str]):
    show_first([f"skipped {path}: {why}" for path, why in t.skipped.items()], "more image",
               tail=" skipped")  # fmt: skip
    if len(t) == 0:
        fail(f"{':'.join(data)}: no usable face images", 1)
    return t


BackendOpt = Annotated[str, typer.Option(help="auto, torch or onnx (onnxruntime).")]
