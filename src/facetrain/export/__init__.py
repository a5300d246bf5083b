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
from dataclasses import asdict
from pathlib import Path

import torch

from facetrain.models import RawEmbedding
from facetrain.models.saved import META_KEY, FaceModel, Preprocess

FORMATS = ("onnx", "torchscript")


def _example(pre: Preprocess) -> torch.Tensor:
    return torch.zeros(2, 3, pre.input_size, pre.input_size)


def export_onnx(net: torch.nn.Module, pre: Preprocess, out: str | os.PathLike) -> Path:
    """`out` as an ONNX file with a dynamic batch axis (torch.export-based exporter)."""
    from facetrain.extras import require

    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")
    out = Path(out)
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
