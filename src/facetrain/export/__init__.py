"""Export a trained model to ONNX or TorchScript, with its preprocessing record inside.

The exported graph maps a prepared float batch (N, 3, S, S) — aligned, cropped and
normalized as the record says — to raw embeddings (N, D); callers L2-normalise, and add the
flipped face's embedding the same way as with the PyTorch model. The record travels in the
file (ONNX `metadata_props`, a TorchScript extra file) under the key `facetrain`, so an
exported model cannot be fed faces prepared another way.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from facetrain import atomic
from facetrain.inference.record import META_KEY, ModelFileError, Preprocess
from facetrain.inference.saved import FaceModel
from facetrain.models import RawEmbedding

FORMATS = ("onnx", "torchscript")


def _example(pre: Preprocess) -> torch.Tensor:
    return torch.zeros(2, 3, pre.input_size, pre.input_size)


def export_onnx(net: torch.nn.Module, pre: Preprocess, out: str | os.PathLike) -> Path:
    """`out` as an ONNX file with a dynamic batch axis (torch.export-based exporter)."""
    from facetrain.extras import require

    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # as every output: its folder is made
    tmp = out.with_name(f".{out.name}.tmp")
    model = RawEmbedding(net.cpu().eval())
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as work:
        raw = Path(work) / "model.onnx"  # the exporter may put weights in a side file here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (_example(pre),),
                str(raw),
                input_names=["input"],
                output_names=["embedding"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
        proto = onnx.load(str(raw))  # one self-contained file, weights included
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(asdict(pre))
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    return out


def export_torchscript(net: torch.nn.Module, pre: Preprocess, out: str | os.PathLike) -> Path:
    """`out` as a traced TorchScript module; the record is the extra file `facetrain`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # as every output: its folder is made
    tmp = out.with_name(f".{out.name}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(RawEmbedding(net.cpu().eval()), _example(pre), check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={META_KEY: json.dumps(asdict(pre))})
    os.replace(tmp, out)
    return out


def max_difference(a: FaceModel, b: FaceModel, x: torch.Tensor) -> float:
    """max |Δ| between two models' unit embeddings of the same prepared batch."""
    with torch.no_grad():
        ea, eb = a.embed(x), b.embed(x)
    return float((ea - eb).abs().max())


@dataclass
class Exported:
    path: Path
    delta: float  # max |Δ| of unit embeddings, exported vs original
    checked_on: str  # what the parity check ran on
    ok: bool  # within tolerance, so written; else `path` was left as it was


def export_model(fm: FaceModel, format_: str, out: str | os.PathLike | None = None,
                 check: list[str] | None = None, tolerance: float = 1e-4) -> Exported:  # fmt: skip
    """Write `fm` (a facetrain torch model) as ONNX or TorchScript next to it (or to `out`)
    once the exported file's embeddings match the original's within `tolerance` on real
    aligned faces (`check`) or random images. A file that does not match is not written:
    `out` (a good export of an earlier run, say) stays as it was."""
    from facetrain.inference.saved import open_model

    if format_ not in FORMATS:
        raise ModelFileError(f"--format {format_!r}: choose from {', '.join(FORMATS)}")
    if not tolerance >= 0:
        raise ModelFileError(f"--tolerance {tolerance}: a number ≥ 0")
    want = {"onnx": (".onnx",), "torchscript": (".pt", ".ts", ".torchscript")}[format_]
    if out is not None and Path(out).suffix not in want:
        raise ModelFileError(f"--out {out}: a {format_} file is named *{' or *'.join(want)}")
    if fm.module is None or fm.backend != "torch":
        raise ModelFileError(f"{fm.source}: export takes a facetrain run folder or .safetensors")
    if out is not None and atomic.is_stream(out):  # the export is read back to check it
        raise ModelFileError(f"--out {out}: not a file; give the name of a file to write")
    out = atomic.target(_default_out(fm, format_) if out is None else out)  # a link kept
    x, what = _parity_batch(fm.pre, check)
    write = export_onnx if format_ == "onnx" else export_torchscript
    trial = out.with_name(f".{out.stem}.unchecked{out.suffix}")  # checked before it is `out`
    try:
        delta = max_difference(fm, open_model(write(fm.module, fm.pre, trial)), x)
        if delta <= tolerance:
            os.replace(trial, out)
    finally:
        trial.unlink(missing_ok=True)
    return Exported(out, delta, what, delta <= tolerance)


def _parity_batch(pre: Preprocess, check: list[str] | None) -> tuple[torch.Tensor, str]:
    """Up to 64 real faces of `check`, prepared the model's way; else 16 random images."""
    from facetrain.inference.feed import prepare
    from facetrain.inference.sources import Images

    if check:
        from itertools import islice

        from facetrain.data.listing import iter_samples
        from facetrain.data.packed import pack_of

        pack = pack_of(check)  # a pack's faces, read from its shards
        if pack:
            paths = pack.source_paths()[:64]
        else:  # a folder of faces, or of one folder per person
            paths = [s.path for s in islice(iter_samples(check, loose=True), 64)]
        got = Images(paths, pre.alignment, "auto", read=pack.rgb if pack else None).fetch(
            list(range(len(paths)))
        )
        imgs = [t for t in got if t is not None]
        if not imgs:
            raise ModelFileError(f"{':'.join(check)}: no usable faces for the parity check")
        x, what = torch.stack(imgs), f"{len(imgs)} real faces"
    else:
        x = torch.randint(0, 256, (16, 3, pre.input_size, pre.input_size), dtype=torch.uint8)
        what = "16 random images (pass --check DIR for real faces)"
    return prepare(x, size=pre.input_size, normalize=pre.normalize, crop=pre.crop), what


def _default_out(fm: FaceModel, format_: str) -> Path:
    """RUN/model.onnx (or .pt) next to the weights; a pretrained model's in this folder."""
    from facetrain.inference.pretrained import is_spec

    suffix = ".onnx" if format_ == "onnx" else ".pt"
    if is_spec(fm.source):  # not into the cache: here
        return Path.cwd() / f"{fm.pre.model}{suffix}"
    src = Path(fm.source).resolve()
    return (src if src.is_dir() else src.parent) / f"model{suffix}"
