"""pack → PackedDataset: bytes, labels and splits survive; batches load in DataLoader workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import save_rgb, tree_hash
from facetrain.cli import app
from facetrain.data import iter_samples
from facetrain.data import packed as packed_mod
from facetrain.data.augment import Augment, apply
from facetrain.data.packed import PackedDataset, pack
from facetrain.data.split import split


@pytest.fixture
def aligned(tmp_path):
    root = tmp_path / "aligned"
    for i in range(6):
        for j in range(5):
            save_rgb(root / f"p{i}" / f"{j}.jpg", 32, 32, seed=i * 10 + j)
    save_rgb(root / "p0" / "x.png", 32, 32, seed=99)
    save_rgb(root / "p1" / "y.bmp", 32, 32, seed=98)
    (root / "p2" / "broken.jpg").write_bytes(b"nope")
    return root


def test_pack_split_folder_roundtrip(aligned, tmp_path):
    before = tree_hash(aligned)
    split(str(aligned), tmp_path / "split", by="image", fraction=0.2)
    res = CliRunner().invoke(
        app, ["pack", str(tmp_path / "split"), str(tmp_path / "pack"), "--images-per-shard", "7"]
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "pack/meta.json").read_text())
    assert meta["images"] == 32 and meta["skipped"] == 1 and meta["shards"] == 5
    assert meta["image_size"] == [32, 32]
    train, val = PackedDataset(tmp_path / "pack", "train"), PackedDataset(tmp_path / "pack", "val")
    assert len(train) + len(val) == 32 and meta["splits"] == {"train": len(train), "val": len(val)}
    assert train.identities == [f"p{i}" for i in range(6)]
    for ds in (train, val):  # what a notebook shows: the split's own images and people
        people = len({ds.identities[k] for k in ds.labels})
        said = f"{len(ds)} images of {people} identities, 32x32 raw"
        assert repr(ds) == f"PackedDataset({tmp_path / 'pack'}: {said})"
    paths = (tmp_path / "pack/paths.txt").read_text().splitlines()
    for k in range(len(train)):
        img, label = train[k]
        src = paths[np.flatnonzero(np.load(tmp_path / "pack/index.npy")["split"] == 0)[k]]
        assert train.identities[label] == src.split("/")[-2]
        want = np.asarray(Image.open(src).convert("RGB")).transpose(2, 0, 1)
        # PIL and torchvision both use libjpeg-turbo; their upsampling may differ by a level
        assert np.abs(img.numpy().astype(int) - want).max() <= 2
    assert "broken.jpg" in (tmp_path / "pack/skipped.tsv").read_text()
    assert tree_hash(aligned) == before


def test_a_pack_given_where_photos_are_expected(aligned, tmp_path):
    """`stats PACK` counted its index and meta.json as 'not_image' and no identity; `prune
    PACK` listed nothing. `stats` reads a pack's own record (identities, splits, size); a
    command that lists photo files says a pack is not one, naming what to give."""
    split(str(aligned), tmp_path / "split", by="identity", fraction=0.34)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)
    (aligned / "meta.json").write_text("{}")  # a dataset's own meta.json is no pack
    assert len(list(iter_samples(str(aligned)))) == 33  # broken.jpg listed, not packed
    res = CliRunner().invoke(app, ["stats", str(tmp_path / "pack")])
    assert res.exit_code == 0, res.output
    assert "identities: 6  images: 32" in res.output and "not_image" not in res.output
    train = len(PackedDataset(tmp_path / "pack", "train"))
    assert f"a pack: train {train}, val {32 - train}" in res.output
    assert "image sizes: 32x32 (32)" in res.output
    res = CliRunner().invoke(app, ["prune", str(tmp_path / "pack"), str(tmp_path / "k.txt")])
    assert res.exit_code != 0 and "is a pack: give the folders or list files" in res.output
    assert not (tmp_path / "k.txt").exists()


def test_pack_resumes_completed_shards(aligned, tmp_path, monkeypatch):
    out = tmp_path / "pack"
    real = packed_mod._encoded
    n = {"calls": 0}

    def dying(path, store):
        n["calls"] += 1
        if n["calls"] == 20:
            raise KeyboardInterrupt
        return real(path, store)

    monkeypatch.setattr(packed_mod, "_encoded", dying)
    with pytest.raises(KeyboardInterrupt):
        pack(str(aligned), out, images_per_shard=8, progress=False)
    assert not (out / "meta.json").exists()
    monkeypatch.setattr(packed_mod, "_encoded", real)
    n["calls"] = 0
    counted = {"n": 0}

    def counting(path, store):
        counted["n"] += 1
        return real(path, store)

    monkeypatch.setattr(packed_mod, "_encoded", counting)
    pack(str(aligned), out, images_per_shard=8, progress=False)
    assert counted["n"] == 33 - 16  # the two finished shards were not redone
    fresh = tmp_path / "fresh"
    pack(str(aligned), fresh, images_per_shard=8, progress=False)
    a, b = np.load(out / "index.npy"), np.load(fresh / "index.npy")
    assert (a == b).all()
    assert len(PackedDataset(out, None)) == sum(1 for _ in iter_samples(str(aligned))) - 1


def test_the_training_loader_gives_each_epoch_s_batches_again_for_the_same_step(
    aligned, tmp_path
):  # fmt: skip
    """The one training data path (`data.loader.TrainLoader`): batch b of an epoch is the
    same augmented tensor whenever it is asked for with the same generator seed (a resumed
    run sees what an uninterrupted one saw), an epoch covers every image once, and a plain
    torch DataLoader over the pack still works with worker processes."""
    from facetrain.data.loader import TrainLoader
    from facetrain.data.sampler import EpochBatches

    pack(str(aligned), tmp_path / "pack", progress=False)
    ds = PackedDataset(tmp_path / "pack", "train")
    data = TrainLoader(ds, EpochBatches(len(ds), 8, seed=3), Augment(flip=True, crop=28), 24)
    seen = []
    for b in range(len(data)):
        ids = data.indices(1, b)
        x, y = data.batch(ids, torch.Generator().manual_seed(b))
        again, _ = data.batch(data.indices(1, b), torch.Generator().manual_seed(b))
        assert x.shape == (8, 3, 24, 24) and x.dtype == torch.float32 and torch.equal(x, again)
        assert x.min() >= -1.0 and x.max() <= 1.0 and y.tolist() == ds.labels[ids].tolist()
        seen += ids
    assert sorted(seen) == list(range(len(ds))) == list(range(32))
    other, _ = data.batch(data.indices(1, 0), torch.Generator().manual_seed(99))
    assert not torch.equal(
        other, data.batch(data.indices(1, 0), torch.Generator().manual_seed(0))[0]
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
    assert sum(len(y) for _, y in loader) == 32


def test_augment_flip_and_normalization():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = apply(x, Augment(flip=True, normalize="none"), g)
    for i in range(2):
        assert torch.equal(out[i], x[i].float()) or torch.equal(out[i], x[i].flip(2).float())
    fixed = apply(x, Augment(flip=False, normalize="fixed"))
    assert torch.allclose(fixed, (x.float() - 127.5) / 128)
    per = apply(x, Augment(flip=False, normalize="per_image"))
    assert torch.allclose(per.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(per.std(dim=(1, 2, 3)), torch.ones(2), atol=1e-4)


def test_encoded_store_and_raw_store_give_the_same_pixels(tmp_path):
    root = tmp_path / "png"
    for i in range(3):
        save_rgb(root / f"p{i}" / "a.png", 20, 24, seed=i)
    save_rgb(root / "p0" / "odd.png", 30, 30, seed=7)  # another size: raw packs refuse it
    pack(str(root), tmp_path / "raw", store="raw", progress=False)
    pack(str(root), tmp_path / "enc", store="encoded", progress=False)
    raw, enc = PackedDataset(tmp_path / "raw", None), PackedDataset(tmp_path / "enc", None)
    assert len(raw) == 3 and len(enc) == 4
    assert "differs from the pack's 24x20" in (tmp_path / "raw/skipped.tsv").read_text()
    xr, yr = raw[[0, 1, 2]]
    assert xr.shape == (3, 3, 20, 24) and yr.tolist() == [0, 1, 2]
    for k in range(3):
        assert torch.equal(raw[k][0], enc[k if k == 0 else k + 1][0])


def test_rotation_jitter_grayscale():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    x[:, 0, :, 14:18] = 255  # a vertical red bar
    rot = apply(x, Augment(flip=False, rotate=30, normalize="none"), g)
    assert not torch.equal(rot, x.float())  # rotated: the bar leaves its columns
    moved = (rot[:, 0] > 128).float()
    assert moved[:, :, 14:18].mean() < 0.9  # the bar left its columns
    assert moved.sum(dim=(1, 2)).min() > 0.8 * 4 * 32  # … and was moved, not erased
    assert not torch.equal(rot[0], rot[1])  # each image its own angle
    gray = apply(x, Augment(flip=False, grayscale=1.0, normalize="none"), g)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    assert torch.allclose(gray[:, 0, 0, 15], torch.full((4,), 0.299 * 255), atol=1e-3)
    img = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    jit = apply(img, Augment(flip=False, jitter=0.4, normalize="none"), g)
    assert jit.min() >= 0 and jit.max() <= 255 and not torch.allclose(jit, img.float())
    same = apply(img, Augment(flip=False, normalize="none"), g)
    assert torch.equal(same, img.float())


def test_a_second_pack_into_the_same_folder_is_refused_naming_the_first(tmp_path):
    """A second `pack` into a folder being packed removed the first's temporaries under it:
    the first failed with 'No such file or directory (…/.shard-00000.bin….tmp)'. The
    second is refused now, naming the first, and writes nothing."""
    import os

    from facetrain.lock import BusyError, held
    from helpers import make_faces

    faces = make_faces(tmp_path / "faces", ids=3, per=2)
    out = tmp_path / "pk"
    out.mkdir()
    with held(out / packed_mod.LOCK, "pack"):  # as a first pack holds it
        with pytest.raises(BusyError, match=f"pack {out} is in use by process {os.getpid()}"):
            pack(str(faces), out, progress=False)
        assert [p.name for p in out.iterdir()] == [".pack.lock"]
    assert pack(str(faces), out, progress=False).images == 6  # once it ended


def test_a_dataset_of_no_images_is_refused_and_no_pack_written(tmp_path):
    """`pack EMPTY OUT` wrote a pack of 0 images in 0 shards, which training then refused."""
    from facetrain.data.listing import DatasetError

    (tmp_path / "empty" / "amy").mkdir(parents=True)
    (tmp_path / "empty" / "amy" / "notes.txt").write_text("not a photo")
    with pytest.raises(DatasetError, match="empty: no images to pack"):
        pack(str(tmp_path / "empty"), tmp_path / "pk", progress=False)
    assert not (tmp_path / "pk").exists()
