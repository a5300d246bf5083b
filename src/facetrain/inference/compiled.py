"""A pretrained model run by ONNX Runtime (`facetrain.runtime`): the everyday commands and
the Python API embed faces without importing torch.

The graph (`graph.py`: aligned uint8 faces in, unit embeddings out) is traced once into the
cache folder, named by the converted weights it was traced from, with the model's
preprocessing record beside it. Only `pretrained:` models are compiled — a bounded set,
where a user's run folders and checkpoints would fill the cache; those run in PyTorch.
`tests/test_runtime.py` checks that each pretrained model embeds as its PyTorch self does.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrain.inference.record import Preprocess
from facetrain.inference.sources import FaceSource, Progress, batches

FILES = ["model.ort", "model.json"]  # the graph; its record and content hash
BATCH = 64  # faces a call: bounded memory for a large `embed`


@dataclass
class CompiledModel:
    """A model as `saved.FaceModel` is seen by its users (`pre`, `source`, `backend`), whose
    `embed_faces` maps aligned uint8 faces to unit embeddings."""

    pre: Preprocess
    source: str
    content_hash: str  # the PyTorch model's `saved.content_hash` (a library knows it by it)
    make: Callable[[], Any]  # its ONNX Runtime session (`runtime.session`)
    backend: str = "onnxruntime"
    module: None = None
    _loading: Future | None = field(default=None, repr=False)

    def prefetch(self) -> CompiledModel:
        """Start making the session in the background: it loads while the first photos
        are read and searched. (A process that hands the photos to workers never does.)"""
        with _PREFETCH:
            if self._loading is None:
                self._loading = _in_background(self.make)
        return self

    @property
    def session(self) -> Any:
        """The session, once made (started here if `prefetch` was not called)."""
        return self.prefetch()._loading.result()  # type: ignore[union-attr]

    def embed_faces(self, faces: list[np.ndarray]) -> np.ndarray:
        """Unit embeddings of aligned HxWx3 uint8 faces; a face of another size is first
        area-resampled to the aligned size (as the aligner would have made it)."""
        from facetrain.align.transform import aligned_size

        s = aligned_size(self.pre.alignment)
        x = [f if f.shape[:2] == (s, s) else cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA)
             for f in faces]  # fmt: skip
        out = [self.session.run(None, {"faces": np.stack(x[i : i + BATCH])})[0]
               for i in range(0, len(x), BATCH)]  # fmt: skip
        return np.concatenate(out).astype(np.float32)

    def eval(self) -> CompiledModel:
        return self


def open_compiled(
    model: str | os.PathLike,
    device: str = "cpu",
    backend: str = "auto",
    spec: dict | None = None,
    prefetch: bool = True,
) -> CompiledModel | None:
    """`model` compiled for ONNX Runtime, when it can be: a `pretrained:` name, `auto`
    backend, no preprocessing override, a CPU, the runtime enabled; None otherwise (the
    caller opens it in PyTorch). `prefetch`: its session starts loading now."""
    from facetrain import runtime
    from facetrain.inference import pretrained

    if not (pretrained.is_spec(model) and backend == "auto" and not spec
            and runtime.enabled(device)):  # fmt: skip
        return None
    if prefetch:  # imported now, which names the cache folder at no extra cost
        import onnxruntime  # noqa: F401
    weights = pretrained.path(str(model))  # the converted file, named by its content
    folder = runtime.compiled(weights.stem, FILES, lambda f: _make(str(model), f))
    if folder is None:
        return None
    about = json.loads((folder / FILES[1]).read_text())
    pre = Preprocess.from_dict(about["pre"], str(model))
    fm = CompiledModel(pre, str(model), about["content_hash"],
                       functools.partial(runtime.session, folder / FILES[0]))  # fmt: skip
    return fm.prefetch() if prefetch else fm


_PREFETCH = threading.Lock()


_MAKING: set[Future] = set()  # sessions being made in the background, waited for at exit


def _in_background(make: Callable[[], Any]) -> Future:
    """make() in a thread (ONNX Runtime builds a session without holding the GIL)."""
    done: Future = Future()

    def run() -> None:
        try:
            done.set_result(make())
        except BaseException as e:  # handed to whoever waits for the result
            done.set_exception(e)

    _MAKING.add(done)
    done.add_done_callback(_MAKING.discard)  # made: the set holds no session
    threading.Thread(target=run, daemon=True).start()
    return done


@atexit.register
def _wait_for_sessions() -> None:
    """A process that ends before its prefetched session is made (a scan of a folder with
    nothing new, `identify` of a path that is not there) waits for it: ending while ONNX
    Runtime builds it in a thread aborted the process, exit 134, "terminate called
    without an active exception", after the command had done its work."""
    for done in list(_MAKING):
        done.exception()  # waits; what went wrong is for whoever wanted the session


def _make(model: str, folder: Path) -> None:
    """Trace the model (PyTorch, once), then write its record and hash beside the graph."""
    from facetrain import atomic
    from facetrain.inference.graph import trace_model
    from facetrain.inference.saved import content_hash, open_model

    fm = open_model(model, "cpu", "auto")
    trace_model(fm.module, fm.pre, folder / FILES[0])
    with atomic.atomic_open(folder / FILES[1], "w") as f:
        json.dump({"pre": asdict(fm.pre), "content_hash": content_hash(fm)}, f)


def open_for_use(model: str | os.PathLike, device: str = "cpu", backend: str = "auto",
                 spec: dict | None = None, prefetch: bool = True):  # fmt: skip
    """The model to embed faces with: compiled when it can be (`open_compiled`), else
    opened in PyTorch (`saved.open_model`, whose errors it raises)."""
    fast = open_compiled(model, device, backend, spec, prefetch)
    if fast is not None:
        return fast
    from facetrain.inference.saved import open_model

    return open_model(model, device, backend, spec)


def model_hash(fm) -> str:
    """What identifies a model's weights (`saved.content_hash`), compiled or not."""
    if isinstance(fm, CompiledModel):
        return fm.content_hash
    from facetrain.inference.saved import content_hash

    return content_hash(fm)


def embed_source(model: CompiledModel, s: FaceSource, *, progress: Progress = None,
                 workers: int = 0) -> np.ndarray:  # fmt: skip
    """Unit embeddings of every face of a source; NaN rows where it has none (`feed.embed`
    for a compiled model)."""
    from facetrain.devices import keep_freed_memory

    keep_freed_memory()  # as `feed.embed` does on a CPU
    width = model.pre.embedding_size * (2 if model.pre.flip == "concat" else 1)
    out = [np.zeros((0, width), np.float32)]
    for faces in batches(s, s.arrays, batch=BATCH, progress=progress, workers=workers):
        rows = np.full((len(faces), width), np.nan, np.float32)
        ok = [k for k, f in enumerate(faces) if f is not None]
        if ok:
            rows[ok] = model.embed_faces([faces[k] for k in ok])
        out.append(rows)
    return np.concatenate(out)
