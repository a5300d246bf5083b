"""prune and split: deterministic for a seed, identity-safe, nothing moved."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import save_rgb, tree_hash
from facetrain.data.listing import iter_samples
from facetrain.data.split import prune, split, stats


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds") / "faces"
    sizes = [1, 2, 3, 5, 8, 10, 12, 20] * 3
    for i, n in enumerate(sizes):
        for j in range(n):
            save_rgb(root / f"id{i:02d}" / f"{j}.jpg", 8, 8, seed=i * 100 + j)
    return root


def ids(lst: Path) -> Counter:
    return Counter(s.identity for s in iter_samples(str(lst)))


def test_prune_keeps_identities_with_enough_images(dataset, tmp_path):
    before = tree_hash(dataset)
    r = prune(str(dataset), tmp_path / "p.txt", 5)
    kept = ids(tmp_path / "p.txt")
    assert r["identities_in"] == 24 and r["identities_kept"] == 15
    assert min(kept.values()) >= 5 and sum(kept.values()) == r["images_kept"] == 3 * 55
    assert tree_hash(dataset) == before


def test_split_by_identity_is_disjoint_and_deterministic(dataset, tmp_path):
    r1 = split(str(dataset), tmp_path / "s1", by="identity", fraction=0.25, seed=3)
    split(str(dataset), tmp_path / "s2", by="identity", fraction=0.25, seed=3)
    r3 = split(str(dataset), tmp_path / "s3", by="identity", fraction=0.25, seed=4)
    train, val = ids(tmp_path / "s1/train.txt"), ids(tmp_path / "s1/val.txt")
    assert not set(train) & set(val)
    assert len(val) == r1.val_identities == 6 and len(train) == 18
    assert r1.train_images + r1.val_images == 183
    assert (tmp_path / "s1/val.txt").read_text() == (tmp_path / "s2/val.txt").read_text()
    assert set(ids(tmp_path / "s3/val.txt")) != set(val)
    assert r3.val_identities == 6


def test_split_by_image_respects_quota_and_min_train(dataset, tmp_path):
    split(str(dataset), tmp_path / "s", by="image", fraction=0.2, min_train=2, seed=0)
    train, val = ids(tmp_path / "s/train.txt"), ids(tmp_path / "s/val.txt")
    full = Counter(s.identity for s in iter_samples(str(dataset)))
    for ident, n in full.items():
        want_val = max(0, min(round(n * 0.2), n - 2))
        assert val.get(ident, 0) == want_val, ident
        assert train[ident] == n - want_val  # small identities stay wholly in train
    tr = {Path(s.path) for s in iter_samples(str(tmp_path / "s/train.txt"))}
    va = {Path(s.path) for s in iter_samples(str(tmp_path / "s/val.txt"))}
    assert not tr & va and len(tr | va) == 183


def test_stats_counts_and_histogram(dataset):
    st = stats(str(dataset))
    assert st["identities"] == 24 and st["images"] == 183
    assert st["images_per_identity"]["max"] == 20
    assert st["histogram"]["1"] == 3 and st["histogram"]["10-19"] == 6
    assert sum(st["histogram"].values()) == 24


def test_stats_check_says_the_sizes_it_decoded(tmp_path):
    """Aligned faces yet, or photos? `stats --check` decodes every image and counts their
    sizes, the most common first; a broken file is a problem, not a size."""
    for j in range(3):
        save_rgb(tmp_path / "a" / f"{j}.jpg", 8, 8, seed=j)
    for j in range(2):
        save_rgb(tmp_path / "b" / f"{j}.png", 6, 10, seed=j)
    (tmp_path / "b" / "broken.jpg").write_bytes(b"not a picture")
    st = stats(str(tmp_path), check=True)
    assert st["sizes"] == {"8x8": 3, "10x6": 2} and list(st["sizes"]) == ["8x8", "10x6"]
    assert st["images"] == 5 and "sizes" not in stats(str(tmp_path))


def test_split_by_image_min_val(dataset, tmp_path):
    split(str(dataset), tmp_path / "s", by="image", fraction=0.2, min_val=2, seed=0)
    val = ids(tmp_path / "s/val.txt")
    full = Counter(s.identity for s in iter_samples(str(dataset)))
    for ident, n in full.items():
        want = min(round(n * 0.2), n - 1)
        assert val.get(ident, 0) == (want if want >= 2 else 0), ident
