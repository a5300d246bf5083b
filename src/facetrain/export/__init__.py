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

import numpy as np
import torch

from facetrain.models import RawEmbedding
from facetrain.models.saved import FaceModel, ModelFileError, Preprocess

FORMATS = ("onnx", "torchscript")
META_KEY = "facetrain"


def _example(pre: Preprocess) -> torch.Tensor:
    return torch.zeros(2, 3, pre.input_size, pre.input_size)


def export_onnx(net: torch.nn.Module, pre: Preprocess, out: str | os.PathLike) -> Path:
    """`out` as an ONNX file with a dynamic batch axis (torch.export-based exporter)."""
    import onnx

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


def _record(meta: str | None, spec: dict | None, source: str, fill: dict) -> Preprocess:
    if meta is None and not spec:
        raise ModelFileError(
            f"{source}: no facetrain preprocessing record in this file; pass the model's "
            "preprocessing as a JSON spec (--preprocess SPEC.json: input_size, normalize, "
            "alignment, ...)"
        )
    d = json.loads(meta) if meta else {"model": "external"}
    d = {k: v for k, v in fill.items() if v is not None} | d | (spec or {})
    return Preprocess.from_dict(d, source)


def load_onnx(path: str | os.PathLike, device: str = "cpu", spec: dict | None = None):
    """An ONNX embedding model run by onnxruntime (CUDA when asked and available)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        sess = ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # onnxruntime raises its own error types for foreign files
        raise ModelFileError(f"{path}: not a usable ONNX model ({e})") from None
    inp, outp = sess.get_inputs()[0], sess.get_outputs()[0]
    side = inp.shape[-1] if isinstance(inp.shape[-1], int) else None
    dim = outp.shape[-1] if isinstance(outp.shape[-1], int) else None
    meta = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    pre = _record(meta, spec, str(path), {"input_size": side, "embedding_size": dim})
    if side is not None and pre.input_size != side:
        raise ModelFileError(
            f"{path}: the model takes {side}x{side} inputs but its preprocessing says "
            f"input_size {pre.input_size}"
        )

    def run(x: torch.Tensor) -> torch.Tensor:
        y = sess.run(None, {inp.name: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(np.asarray(y, np.float32)).to(x.device)

    return FaceModel(pre, run, "onnx", str(path))


def load_torchscript(path: str | os.PathLike, device: str = "cpu", spec: dict | None = None):
    extra = {META_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as e:  # torch.jit raises RuntimeError subclasses for foreign files
        raise ModelFileError(f"{path}: not a TorchScript model ({e})") from None
    pre = _record(extra[META_KEY] or None, spec, str(path), {})
    net.eval()

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x)

    return FaceModel(pre, run, "torchscript", str(path), net)


def max_difference(a: FaceModel, b: FaceModel, x: torch.Tensor) -> float:
    """max |Δ| between two models' unit embeddings of the same prepared batch."""
    with torch.no_grad():
        ea, eb = a.embed(x), b.embed(x)
    return float((ea - eb).abs().max())
