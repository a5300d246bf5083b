"""Networks run by ONNX Runtime, so that using a model does not import torch.

`import torch` alone takes 1.6–2.7 s and 650 MB; ONNX Runtime's import takes a tenth of
that. Inference on a CPU (the detector's three networks, a pretrained model) therefore runs
ONNX graphs traced once from the PyTorch modules into the cache folder (`compiled`): the
first use pays for torch and the tracing (a few seconds), every later process starts
without torch. `FACETRAIN_RUNTIME=torch` (or an environment without onnxruntime and onnx)
runs the PyTorch modules instead; training, evaluation and GPUs always do.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

VERSION = 3  # bumped when a traced graph changes: the cached files are made again
# written last into a folder `compiled` made: each file's size. A folder without it, or whose
# files are not those sizes (cut short, or damaged on disk), is made again: a damaged graph
# had failed every command that used the model until the owner found and cleared the cache
MADE = "made.json"


def enabled(device: str = "cpu") -> bool:
    """Whether inference on `device` runs ONNX graphs: a CPU, onnxruntime and onnx installed
    (both are dependencies; an environment without them runs PyTorch), and
    FACETRAIN_RUNTIME not `torch`."""
    wanted = os.environ.get("FACETRAIN_RUNTIME", "auto").strip() or "auto"
    if wanted not in ("auto", "torch"):
        from facetrain.errors import FacetrainError

        raise FacetrainError(f"FACETRAIN_RUNTIME={wanted!r}: choose auto or torch")
    installed = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))  # run, trace
    return wanted != "torch" and device == "cpu" and installed


def compiled(name: str, files: list[str], make: Callable[[Path], object]) -> Path | None:
    """The cache folder `runtime/NAME` holding `files`, made by `make(folder)` when missing,
    cut short or damaged (each file written atomically, MADE last); None when the
    cache cannot be written (the caller runs the PyTorch modules). Processes that find it
    missing together (a pool's workers) make it once: one makes it while the others wait.
    Folders of other versions unused for `cache.STALE_DAYS` go when one is made."""
    from facetrain import atomic
    from facetrain.cache import cache_dir, prune, used
    from facetrain.lock import waited

    ort = ort_version()  # its own format is read by the version that wrote it
    folder = cache_dir() / "runtime" / f"{name}-r{VERSION}-ort{ort}-{cpu_key()}"
    if _intact(folder, files):
        return used(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # each maker replaced the files under the others: a traced graph differs by a few
        # bytes, and ONNX Runtime, reading a file whose size changed, failed to load it
        with waited(folder):
            if _intact(folder, files):  # made while this process waited
                return used(folder)
            make(folder)  # every file written anew, each atomically
            sizes = {f: (folder / f).stat().st_size for f in files}
            atomic.write_text(folder / MADE, json.dumps(sizes) + "\n")
    except OSError:
        return None
    prune(folder.parent, keep=folder)  # other versions' graphs, unused for months
    return folder


def _intact(folder: Path, files: list[str]) -> bool:
    """Whether `folder` holds `files` as `compiled` made them (their sizes in MADE)."""
    try:
        sizes = json.loads((folder / MADE).read_text())
        return all((folder / f).stat().st_size == sizes[f] for f in files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


@functools.cache
def ort_version() -> str:
    """The installed onnxruntime's version: the module's when it is imported, else its
    package's (half the time of importing it, for a process that hands the networks to
    workers and never runs one)."""
    import sys

    if "onnxruntime" in sys.modules:
        return sys.modules["onnxruntime"].__version__
    from importlib.metadata import version

    return version("onnxruntime")


@functools.cache
def cpu_key() -> str:
    """What a saved graph is specific to besides ONNX Runtime's version: the CPU's
    architecture and instruction sets. Graphs are saved fully optimised, convolutions laid
    out in blocks of the CPU's vector width (ONNX Runtime's NCHWc layout: the networks here
    an eighth to a quarter faster), which another CPU may not run, so a cache folder shared
    between machines keeps one copy each."""
    import hashlib
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    except OSError:  # not Linux: the processor's name stands in for its features
        pass
    about = f"{platform.machine()} {platform.processor()} {flags}"
    return hashlib.sha256(about.encode()).hexdigest()[:8]


def session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime session on the CPU with `threads` threads (default: the command's
    `devices.inference_threads()`), never spinning idle threads against other jobs."""
    import onnxruntime as ort

    from facetrain.devices import inference_threads

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or inference_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: no warnings about unused initialisers
    # no arena and no memory plan kept per input shape: P-Net sees a dozen shapes a photo,
    # and these keep a scan's worker at 290 MB instead of 500 (and no slower)
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def trace(module, examples: tuple, out: Path, inputs: list[str], outputs: list[str],
          dynamic: dict[str, dict[int, str]], opset: int = 18) -> Path:  # fmt: skip
    """A torch module traced to ONNX, then saved at `out` in ONNX Runtime's own format,
    optimised for this CPU (constants folded, batch norms fused into convolutions, the
    convolutions in NCHWc blocks: `cpu_key`): it loads in half the time of the ONNX file,
    which matters for a cold start. The tracing exporter takes about
    a second where the torch.export-based one takes tens; these graphs have no control
    flow. Written atomically."""
    import tempfile

    import onnxruntime as ort
    import torch

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".trace-") as work:
        raw, ready = Path(work) / "graph.onnx", Path(work) / "graph.ort"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), examples, str(raw), input_names=inputs,
                              output_names=outputs, dynamic_axes=dynamic, opset_version=opset,
                              dynamo=False)  # fmt: skip
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # not the warning that the file is for this CPU only
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(ready)
        opts.add_session_config_entry("session.save_model_format", "ORT")
        ort.InferenceSession(str(raw), opts, providers=["CPUExecutionProvider"])
        os.replace(ready, out)
    return out
