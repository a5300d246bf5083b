"""The core install trains and evaluates without the extras; a use that needs one names it."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from facetrain.cli import app
from facetrain.data.packed import pack
from facetrain.train.loop import train
from helpers import make_faces, small_cfg

runner = CliRunner()


@pytest.fixture
def without(monkeypatch):
    """Make modules unimportable, as on an install without their extra."""

    def hide(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)

    return hide


def test_training_without_tensorboard_writes_metrics_and_says_why_no_events(tmp_path, without):
    without("torch.utils.tensorboard", "tensorboard")
    pack(str(make_faces(tmp_path / "faces", ids=4, per=4)), tmp_path / "pack", progress=False)
    said = []
    train(small_cfg(tmp_path / "pack", tmp_path / "run", epochs=1), log=said.append)
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count('"loss"') >= 3
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert any("facetrain[tensorboard]" in s for s in said)


def test_an_onnx_model_without_onnxruntime_names_the_extra(tmp_path, without):
    without("onnxruntime")
    (tmp_path / "m.onnx").write_bytes(b"not really")
    r = runner.invoke(app, ["embed", str(tmp_path / "m.onnx"), str(tmp_path), "--out", "x.npz"])
    assert r.exit_code == 2
    assert "pip install 'facetrain[onnx]'" in r.output and "Traceback" not in r.output


def test_library_serve_without_fastapi_names_the_extra(tmp_path, without):
    from facetrain.library.store import connect

    connect(tmp_path / "lib.db", create=True).close()
    without("fastapi", "uvicorn")
    r = runner.invoke(app, ["library", "serve", "--db", str(tmp_path / "lib.db")])
    assert r.exit_code == 2 and "facetrain[web]" in r.output
