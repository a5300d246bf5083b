"""Faces re-warped into a model's geometry, and the alignment record that travels with them
from the folder to the pack to the trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from facetrain.align.rewarp import rewarp_dataset
from facetrain.align.transform import TEMPLATE_112
from facetrain.cli import app
from facetrain.data.listing import DatasetError
from facetrain.data.packed import pack
from facetrain.train.evaluator import preprocess_for
from helpers import make_faces, small_cfg

TEMPLATE = [[46.65, 44.71], [100.94, 44.60], [73.38, 77.47], [50.09, 104.72], [97.65, 104.46]]
GEOMETRY = {"mode": "similarity", "size": 150, "template": TEMPLATE}


def dot_face(path, points=TEMPLATE_112):
    """A 112x112 'face' with a white dot at each of the standard template's five points."""
    img = np.zeros((112, 112, 3), np.uint8)
    for x, y in np.round(points).astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def test_rewarped_faces_put_the_five_points_on_the_models_template(tmp_path):
    dot_face(tmp_path / "std" / "a" / "0.png")
    rep = rewarp_dataset([str(tmp_path / "std")], tmp_path / "out", GEOMETRY, progress=False)
    assert rep.written == 1
    chip = np.asarray(Image.open(tmp_path / "out" / "a" / "0.jpg").convert("L"))
    assert chip.shape == (150, 150)
    for x, y in np.round(TEMPLATE).astype(int):
        assert chip[y - 2 : y + 3, x - 2 : x + 3].max() > 120  # the dot moved with its point
    assert json.loads((tmp_path / "out" / "align_config.json").read_text()) == GEOMETRY
    again = rewarp_dataset([str(tmp_path / "std")], tmp_path / "out", GEOMETRY, progress=False)
    assert (again.written, again.done_before) == (0, 1)  # resumed: nothing done twice


def test_the_alignment_record_goes_from_folder_to_pack_to_model(tmp_path):
    make_faces(tmp_path / "std", ids=3, per=3)
    rewarp_dataset([str(tmp_path / "std")], tmp_path / "chips", GEOMETRY, progress=False)
    pack(str(tmp_path / "chips"), tmp_path / "pack", progress=False)
    assert json.loads((tmp_path / "pack" / "align_config.json").read_text()) == GEOMETRY
    pre = preprocess_for(small_cfg(tmp_path / "pack", tmp_path / "r"), 150, tmp_path / "pack")
    assert pre.alignment == GEOMETRY


def test_faces_of_two_geometries_are_not_packed_together(tmp_path):
    make_faces(tmp_path / "std", ids=2, per=2)
    rewarp_dataset([str(tmp_path / "std")], tmp_path / "a", GEOMETRY, progress=False)
    other = dict(GEOMETRY, size=160)
    rewarp_dataset([str(tmp_path / "std")], tmp_path / "b", other, progress=False)
    with pytest.raises(DatasetError, match="aligned differently"):
        pack(f"{tmp_path / 'a'}:{tmp_path / 'b'}", tmp_path / "pack", progress=False)


def test_rewarp_refuses_a_folder_of_something_else_or_inside_its_input(tmp_path):
    """OUT holding the user's files is refused; so is OUT inside the faces read, which it
    had filled (the re-warped faces mixed into the data as an identity of folders)."""
    from facetrain.errors import FacetrainError

    faces = tmp_path / "faces"
    (faces / "amy").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    r = CliRunner().invoke(app, ["rewarp", str(faces), str(tmp_path / "out"),
                                 "--model", "pretrained:nope"])  # fmt: skip
    assert r.exit_code == 2 and "unknown pretrained model" in r.output
    with pytest.raises(FacetrainError, match="not empty and not a re-warped faces folder"):
        rewarp_dataset([str(faces)], tmp_path / "out", GEOMETRY, progress=False)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    with pytest.raises(FacetrainError, match="inside the input"):
        rewarp_dataset([str(faces)], faces / "chips", GEOMETRY, progress=False)
    assert sorted(p.name for p in faces.iterdir()) == ["amy"]


def test_centres_from_embeddings_are_the_class_means(tmp_path):
    from facetrain.data.packed import PackedDataset
    from facetrain.models import create_model
    from facetrain.train.build import centres_from_embeddings
    from facetrain.train.evaluator import preprocess_for
    from facetrain.train.objective import build_objective

    pack(str(make_faces(tmp_path / "f", ids=4, per=4)), tmp_path / "p", progress=False)
    ds = PackedDataset(tmp_path / "p", split="train")
    cfg = small_cfg(tmp_path / "p", tmp_path / "r", embedding_size=16, loss="cosface")
    torch.manual_seed(0)
    model = create_model("nn4_small2", 16).eval()
    objective = build_objective(cfg.objective, 16, 4)
    centres_from_embeddings(model, objective, ds, preprocess_for(cfg, 96), "cpu")
    head = objective.head
    x, y = ds.batch(list(range(len(ds))))
    from facetrain.inference.feed import prepare

    with torch.no_grad():
        e = model.eval()(prepare(x, size=96, normalize="fixed"))
    for c in range(4):
        mean = torch.nn.functional.normalize(e[y == c].mean(0), dim=0)
        assert torch.allclose(head.weight[c], mean, atol=1e-5)
