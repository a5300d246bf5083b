"""Listing datasets: several roots, name clashes, what is skipped, list files."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from conftest import save_rgb
from facetrain.data.listing import (
    DatasetError,
    Problems,
    iter_list_file,
    iter_samples,
    parse_roots,
    write_list,
)


@pytest.fixture
def two_roots(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "casia", tmp_path / "vgg"
    save_rgb(a / "alice" / "1.jpg")
    save_rgb(a / "alice" / "2.JPEG")
    save_rgb(a / "bob" / "x.png")
    save_rgb(b / "alice" / "9.jpg")
    save_rgb(b / "carol" / "c.bmp")
    return a, b


def test_colon_and_repeated_roots_are_the_same(two_roots):
    a, b = two_roots
    assert parse_roots(f"{a}:{b}") == parse_roots([str(a), str(b)]) == [str(a), str(b)]


def test_same_name_in_two_roots_stays_two_identities(two_roots):
    a, b = two_roots
    ids = {s.identity for s in iter_samples(f"{a}:{b}")}
    assert ids == {"casia__alice", "casia__bob", "vgg__alice", "vgg__carol"}


def test_merge_same_names(two_roots):
    a, b = two_roots
    samples = list(iter_samples([str(a), str(b)], merge_same_names=True))
    alice = [s for s in samples if s.identity == "alice"]
    assert len(alice) == 3
    assert len({s.name for s in alice}) == 3  # names stay unique within the merged identity


def test_one_name_written_two_ways_is_one_identity(tmp_path):
    """A name from a Mac (decomposed: e + combining diaeresis) and the same name typed elsewhere
    were two identities: the person pruned as two small classes, and split across train
    and val. Now one, merged across roots and inside one root, no file name lost."""
    from facetrain.data.split import identity_counts, split

    nfc, nfd = "Zo\u00eb", "Zoe\u0308"
    mac, linux = tmp_path / "mac", tmp_path / "linux"
    for root, spelling in ((mac, nfd), (linux, nfc)):
        for k in range(3):
            save_rgb(root / spelling / f"{k}.jpg", seed=k)
        save_rgb(root / "ann" / "1.jpg")
    counts = identity_counts([str(mac), str(linux)], merge_same_names=True)
    assert counts[nfc] == 6 and nfd not in counts
    both = tmp_path / "both"  # the two spellings side by side in one root
    for spelling in (nfd, nfc):
        for k in range(3):
            save_rgb(both / spelling / f"{k}.jpg", seed=k)
    for k in range(3):
        save_rgb(both / "ann" / f"{k}.jpg", seed=k)
    problems = Problems()
    zoe = [s for s in iter_samples(str(both), problems=problems) if s.identity != "ann"]
    assert {s.identity for s in zoe} == {nfc} and len({s.name for s in zoe}) == 6
    assert problems.counts["identity_spelled_twice"] == 1
    for seed in range(4):  # identity-safe: Zoë on one side only, whatever the seed
        r = split(str(both), tmp_path / f"split{seed}", fraction=0.5, seed=seed)
        sides = [{unicodedata.normalize("NFC", line.split("\t")[0])
                  for line in Path(p).read_text().splitlines()[1:]}
                 for p in (r.train_list, r.val_list)]  # fmt: skip
        assert sides[0] & sides[1] == set(), sides


def test_single_root_uses_plain_names_and_any_extension_case(two_roots):
    a, _ = two_roots
    samples = list(iter_samples(str(a)))
    assert [(s.identity, s.name) for s in samples] == [
        ("alice", "1"),
        ("alice", "2"),
        ("bob", "x"),
    ]


def test_skips_and_counts_problems(tmp_path: Path):
    root = tmp_path / "data"
    save_rgb(root / "ann" / "a.jpg")
    save_rgb(root / "ann" / "a.png")  # same stem, other extension
    save_rgb(root / "ann" / "nested" / "deep.webp", fmt="WEBP")
    (root / "ann" / ".DS_Store").write_bytes(b"x")
    (root / "ann" / "notes.txt").write_text("hi")
    (root / "empty_person").mkdir()
    (root / ".hidden_dir").mkdir()
    save_rgb(root / "stray.jpg")
    os.symlink("..", root / "ann" / "nested" / "loop")  # a symlink loop
    p = Problems()
    samples = list(iter_samples(str(root), problems=p))
    assert sorted(s.name for s in samples) == ["a_jpg", "a_png", "nested/deep"]
    assert p.counts["hidden"] == 2
    assert p.counts["not_image"] == 1
    assert p.counts["empty_identity"] == 1
    assert p.counts["outside_identity_folder"] == 1
    assert p.counts["symlink_loop"] >= 1


def test_raw_beside_its_picture_is_that_photo_once(tmp_path: Path):
    """A camera set to RAW + JPEG writes each photo twice; training on both would count the
    face twice. A lone RAW is a photo of its own."""
    root = tmp_path / "data"
    save_rgb(root / "ann" / "IMG_0001.JPG")
    (root / "ann" / "IMG_0001.CR2").write_bytes(b"raw")
    save_rgb(root / "ann" / "IMG_0003.jpg")
    (root / "ann" / "img_0003.NEF").write_bytes(b"raw")  # the camera's case differs
    (root / "ann" / "IMG_0002.dng").write_bytes(b"raw")  # no picture beside it
    p = Problems()
    samples = list(iter_samples(str(root), problems=p))
    assert sorted(os.path.basename(s.path) for s in samples) == [
        "IMG_0001.JPG", "IMG_0002.dng", "IMG_0003.jpg"]  # fmt: skip
    assert sorted(s.name for s in samples) == ["IMG_0001", "IMG_0002", "IMG_0003"]
    assert p.counts["raw_left_to_picture"] == 2
    assert sorted(map(os.path.basename, p.examples["raw_left_to_picture"])) == [
        "IMG_0001.CR2", "img_0003.NEF"]  # fmt: skip


def test_unicode_and_space_names(tmp_path: Path):
    root = tmp_path / "données"
    save_rgb(root / "José Ñúñez" / "photo 1.jpg")
    (s,) = list(iter_samples(str(root)))
    assert s.identity == "José Ñúñez" and s.name == "photo 1"


def test_list_file_roundtrip_relative_paths(tmp_path: Path, two_roots):
    a, _ = two_roots
    lst = tmp_path / "lists" / "all.txt"
    n = write_list(lst, iter_samples(str(a)))
    assert n == 3
    back = list(iter_samples(str(lst)))
    assert [(s.identity, Path(s.path).resolve()) for s in back] == [
        (s.identity, Path(s.path).resolve()) for s in iter_samples(str(a))
    ]
    assert not any(os.path.isabs(line.split("\t")[1]) for line in lst.read_text().splitlines()[1:])
    assert list(iter_list_file(str(lst)))[0].identity == "alice"


def test_missing_root_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DatasetError, match="no such folder"):
        parse_roots(str(tmp_path / "nope"))
    (tmp_path / "f.txt").write_text("hello\n")
    with pytest.raises(DatasetError, match="neither a folder"):
        parse_roots(str(tmp_path / "f.txt"))


def test_broken_link_listed_once_and_reported_by_stats(tmp_path: Path):
    from facetrain.data.split import stats

    root = tmp_path / "data"
    save_rgb(root / "ann" / "a.jpg")
    os.symlink(tmp_path / "nowhere.jpg", root / "ann" / "gone.jpg")
    samples = list(iter_samples(str(root)))
    assert sorted(s.name for s in samples) == ["a", "gone"]  # align reports it unreadable
    st = stats(str(root))
    assert st["images"] == 1 and st["problems"] == {"unreadable": 1}  # the broken one not counted


def test_a_folder_deleted_while_listed_is_reported_vanished(tmp_path: Path, monkeypatch):
    """Hostile finding 46: identity folders deleted during a listing were reported as
    `broken_link` and `empty_identity` (they were neither)."""
    import shutil

    from facetrain.data import listing

    root = tmp_path / "data"
    for name in ("ann", "bob"):
        save_rgb(root / name / "a.jpg")
    real = listing._iter_identity

    def deleting(folder, identity, problems):  # bob's folder goes as it is reached
        if identity == "bob":
            shutil.rmtree(folder)
        return real(folder, identity, problems)

    monkeypatch.setattr(listing, "_iter_identity", deleting)
    problems = listing.Problems()
    samples = list(iter_samples(str(root), problems=problems))
    assert [s.identity for s in samples] == ["ann"]
    assert dict(problems.counts) == {"vanished": 1}


def test_a_folder_of_photos_and_no_folders_is_one_persons_not_a_dataset(tmp_path: Path):
    """Given where one folder per person is read, a folder of photos is refused by name
    with its parent as the likely root; hidden folders (a viewer's thumbnails) make it no
    dataset; photos beside identity folders are only counted; unlabelled faces (`loose`)
    may stand in a root."""
    one = tmp_path / "people" / "ann"
    save_rgb(one / "1.jpg")
    (one / ".thumbnails").mkdir()
    for roots in (str(one), [str(tmp_path / "people"), str(one)]):
        with pytest.raises(DatasetError, match=f"{one} holds photos and no identity folders.*"
                           f"pass its parent \\({tmp_path / 'people'}\\)"):  # fmt: skip
            list(iter_samples(roots))
    assert [s.identity for s in iter_samples(str(one), loose=True)] == ["_unlabelled"]
    assert [s.identity for s in iter_samples(str(tmp_path / "people"))] == ["ann"]
    save_rgb(tmp_path / "people" / "stray.jpg")
    p = Problems()
    assert len(list(iter_samples(str(tmp_path / "people"), problems=p))) == 1
    assert p.counts["outside_identity_folder"] == 1
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("no photo")
    assert parse_roots(str(tmp_path / "notes")) == [str(tmp_path / "notes")]
