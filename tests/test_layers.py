"""The import rules of docs/architecture.md, read from the code itself (an `ast` walk), and
the library's pure layers doing their job without a store."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src" / "facetrain"


def imports(path: Path) -> set[str]:
    """Every module a file imports (at the top or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def facetrain_imports(folder: str) -> dict[str, set[str]]:
    return {
        str(p.relative_to(SRC)): {m for m in imports(p) if m.startswith("facetrain")}
        for p in sorted((SRC / folder).rglob("*.py"))
    }


def test_models_know_nothing_but_models():
    bad = {
        f: sorted(m for m in mods if not m.startswith("facetrain.models"))
        for f, mods in facetrain_imports("models").items()
    }
    assert not {f: m for f, m in bad.items() if m}, bad


def test_losses_and_miners_know_no_training_files_or_photos():
    allowed = (
        "facetrain.losses",
        "facetrain.miners",
        "facetrain.distances",
        "facetrain.collectives",
    )
    for folder in ("losses", "miners"):
        for f, mods in facetrain_imports(folder).items():
            assert all(m.startswith(allowed) for m in mods), (f, mods)


def test_the_store_only_stores():
    mods = imports(SRC / "library" / "store.py")
    assert "torch" not in mods
    assert not {m for m in mods if m.startswith("facetrain.library")}, mods


def test_clustering_is_pure():
    mods = imports(SRC / "library" / "cluster.py")
    assert not {m for m in mods if m.startswith(("facetrain.library", "sqlite3"))}, mods


def test_nothing_imports_the_cli():
    for f, mods in facetrain_imports(".").items():
        if not f.startswith("cli/") and f != "__main__.py":
            assert not {m for m in mods if m.startswith("facetrain.cli")}, f


def test_one_place_computes_distances():
    """No module but distances.py writes a distance formula (a squared difference summed,
    an arccos of a dot product)."""
    for p in SRC.rglob("*.py"):
        if p.name == "distances.py":
            continue
        text = p.read_text()
        for formula in (".pow(2).sum(1)", "np.sum(np.square(", "arccos("):
            assert formula not in text, (p, formula)


def test_new_faces_go_to_the_stacks_they_come_near_and_rejections_hold():
    """`restack_near` is pure and keeps the owner's word: the new faces near person 7's
    confirmed face go to 7, but not the one the owner rejected for 7; the others are new
    stacks."""
    from facetrain.library.cluster import FaceSet, restack_near

    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 1.0
    emb = np.concatenate([centres[:1]] + [c + 0.02 * rng.standard_normal((5, 4))
                                          for c in centres])  # fmt: skip
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    faces = FaceSet(np.arange(99, 115), emb, np.array([999, *range(15)]))
    person = np.array([7] + [-1] * 15)  # face 99: person 7's, confirmed
    plan = restack_near(faces, person, person == 7, rejected={(101, 7)}, threshold=0.5,
                        spacing=False)  # fmt: skip
    assert plan.to_person == [(7, [100, 102, 103, 104])]
    assert sorted(sorted(s) for s in plan.new_stacks) == [
        [101],
        list(range(105, 110)),
        list(range(110, 115)),
    ]


def test_a_library_never_scans_its_own_files(tmp_path):
    from facetrain.data.listing import list_photos
    from facetrain.library.files import LibraryFiles

    db = tmp_path / "faces.db"
    files = LibraryFiles.of(db)
    files.thumbs.mkdir()
    (files.thumbs / "1-abc-112.jpg").write_bytes(b"x")
    (tmp_path / "holiday.jpg").write_bytes(b"x")
    assert files.owns(files.thumbs / "1-abc-112.jpg") and files.owns(files.lock)
    assert list_photos(tmp_path, files.owns) == [str(tmp_path / "holiday.jpg")]
    assert len(list_photos(tmp_path)) == 2  # without the rule, the cache looks like photos


def test_evaluate_reads_a_run_without_importing_train():
    """evaluate and train imported each other (plots and report read the run folder through
    train/run_folder); the run folder's names and reader now sit at the base."""
    assert not {f: m for f, mods in facetrain_imports("evaluate").items()
                if (m := sorted(x for x in mods if x.startswith("facetrain.train")))}  # fmt: skip
    base_rules = (("run_folder.py", ()), ("distances.py", ()),
                  ("neighbours.py", ("facetrain.distances",)),
                  ("open_set.py", ("facetrain.distances", "facetrain.neighbours")),
                  ("linkage.py", ("facetrain.distances", "facetrain.neighbours")))  # fmt: skip
    for base, may in base_rules:
        assert {m for m in imports(SRC / base) if m.startswith("facetrain")} <= set(may), base
    names = ("align_config.json", "model.safetensors", "metrics.jsonl", "revision.txt")
    for p in SRC.rglob("*.py"):
        if p.name != "run_folder.py":
            text = p.read_text()
            assert not [n for n in names if f'"{n}"' in text], p  # the names have one home


def test_no_file_imports_in_a_circle():
    """No two files of facetrain import each other, directly or around a circle (inside
    functions too): inference/saved ↔ pretrained and the model registry ↔ its families
    were the last two."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    files = sorted(SRC.rglob("*.py"))
    name = {".".join(("facetrain", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(
        ".__init__"): k for k, p in enumerate(files)}  # fmt: skip
    edges = []
    for k, p in enumerate(files):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in name:
                targets = [f"{node.module}.{a.name}" for a in node.names]
                hits = [name[t] for t in targets if t in name] or [name[node.module]]
                edges += [(k, t) for t in hits if t != k]
            elif isinstance(node, ast.Import):
                edges += [(k, name[a.name]) for a in node.names if a.name in name]
    r, c = zip(*edges)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(len(files),) * 2)
    _, comp = connected_components(graph, directed=True, connection="strong")
    circles = [[str(files[i].relative_to(SRC)) for i in np.flatnonzero(comp == k)]
               for k in np.unique(comp) if (comp == k).sum() > 1]  # fmt: skip
    assert not circles, circles


def test_rows_grouped_by_label_keep_their_order_and_every_label():
    """The one grouping the clustering and the classifier's hold-out share."""
    from facetrain.groups import by_label

    got = by_label(np.array([2, 0, 2, 0, 3]))
    assert [g.tolist() for g in got] == [[1, 3], [], [0, 2], [4]]
    assert by_label(np.array([], dtype=np.int64)) == []
