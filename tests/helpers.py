"""Shared test helpers: the CLI run in-process, small generated data sets and models,
libraries built and named as an owner would, and the web page served to a client or a
browser. Test modules import these from here (never from each other); fixtures shared by
several modules are in conftest.py."""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import BBT, SHARED
from facetrain.cli import app
from facetrain.inference.record import Preprocess, save_model
from facetrain.library.web import create_app
from facetrain.models import create_model
from facetrain.train.config import TrainConfig


def cli(*args) -> str:
    """Run `facetrain ARGS` in-process; it must succeed. Returns what it printed."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def cli_fails(*args) -> str:
    """Run `facetrain ARGS` in-process; it must fail with an `error:` line, no traceback."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code != 0 and "error:" in res.output, res.output
    assert "Traceback" not in res.output
    return res.output


def make_faces(root: Path, ids: int = 8, per: int = 8, size: int = 112) -> Path:
    """Synthetic 'faces': each identity a colour and stripe pattern, images jittered.
    Stripes alternate vertical and horizontal: with vertical stripes only, neighbours (one
    pixel apart in stripe period) were near twins that a few training steps could embed
    together (id6 and id7 at distance 0 on one CPU)."""
    rng = np.random.default_rng(0)
    for i in range(ids):
        base = rng.integers(0, 255, 3)
        for j in range(per):
            img = np.zeros((size, size, 3), np.uint8) + base.astype(np.uint8)
            if i % 2:
                img[(i * 7) % size :: 9 + i, :] = 255 - base
            else:
                img[:, (i * 7) % size :: 9 + i] = 255 - base
            img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            p = root / f"id{i}" / f"{j}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(p, quality=95)
    return root


def small_cfg(data, out, **kw) -> TrainConfig:
    base = dict(
        data=[str(data)],
        out=str(out),
        model="nn4_small2",
        embedding_size=32,
        batch_size=16,
        epoch_size=3,
        epochs=2,
        lr=0.05,
        log_every=1,
        threads=1,
        checkpoint_minutes=1e9,
    )
    base.update(kw)
    return TrainConfig.of(**base)


def lfw_style(faces: Path, dst: Path) -> Path:
    """The first 4 images of each identity under LFW's names: <name>/<name>_NNNN.jpg."""
    for d in faces.iterdir():
        for j in range(4):
            out = dst / d.name / f"{d.name}_{j:04d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes((d / f"{j}.jpg").read_bytes())
    return dst


def write_bin_and_pairs(faces: Path, tmp: Path) -> tuple[Path, Path]:
    """A .bin set and an LFW-format pairs.txt over the synthetic faces (2 folds)."""
    import pickle

    ids = sorted(p.name for p in faces.iterdir())
    bins, issame, lines = [], [], ["2 4"]
    for fold in range(2):
        for k in range(4):
            i = ids[(fold * 4 + k) % len(ids)]
            bins += [(faces / i / "0.jpg").read_bytes(), (faces / i / "1.jpg").read_bytes()]
            issame.append(True)
            lines.append(f"{i} 0 1")
        for k in range(4):
            a, b = ids[k], ids[(k + 1 + fold) % len(ids)]
            bins += [(faces / a / "2.jpg").read_bytes(), (faces / b / "3.jpg").read_bytes()]
            issame.append(False)
            lines.append(f"{a} 2 {b} 3")
    (tmp / "syn.bin").write_bytes(pickle.dumps((bins, issame), protocol=4))
    (tmp / "pairs.txt").write_text("\n".join(lines) + "\n")
    return tmp / "syn.bin", tmp / "pairs.txt"


def huge_png(path: Path, w: int, h: int) -> None:
    """A tiny file whose header claims w x h pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def make_model(path: Path, seed: int = 0, threshold: float = 0.5, dim: int = 32) -> Path:
    """An untrained network whose batch-norm statistics were measured on real aligned
    faces: without that, an untrained net maps every face to nearly the same vector."""
    torch.manual_seed(seed)
    net = create_model("nn4_small2", dim)
    faces = sorted((SHARED / "lfw").glob("A*/*.jpg"))[:64]
    if faces:
        from facetrain.inference.feed import prepare
        from facetrain.inference.sources import Images

        x = torch.stack(Images([str(p) for p in faces]).fetch(list(range(len(faces)))))
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # a plain average over the calibration batch
        with torch.no_grad():
            net.train()(prepare(x, size=96, normalize="fixed"))
    pre = Preprocess(model="nn4_small2", embedding_size=dim, input_size=96, threshold=threshold)
    return save_model(path, net.eval(), pre)


def embedded_library(db: Path, emb, threshold: float = 0.19, photo=None):
    """A library (`Library`, open) holding these embeddings as faces, one photo each unless
    `photo` says which photo each face is on; face ids are 1..N in order."""
    from facetrain.library import store
    from facetrain.library.library import Library

    lib = Library(db, create=True)
    with store.transaction(lib.con):
        store.check_model(lib.con, {"distance": "squared_l2", "threshold": threshold}, "test",
                          str(db), "x")  # fmt: skip
    return add_embedded(lib, emb, range(len(emb)) if photo is None else photo)


def add_embedded(lib, emb, photo):
    """These embeddings added to an open library as faces of the photos `photo` names
    (numbers: a photo not there yet is made), as a scan records new photos."""
    from facetrain.library import store

    with store.transaction(lib.con):
        ids = {}
        for e, ph in zip(emb, photo):
            if ph not in ids:
                ids[ph] = store.add_photo(lib.con, f"/p/{ph}.jpg", f"{ph:064x}", 1, 0.0, 9, 9,
                                          None, "ok", None)  # fmt: skip
            face = dict(box=[0, 0, 50, 50], landmarks=[], score=1.0, size=50.0, sharpness=99.0,
                        usable=True, embedding=e)  # fmt: skip
            store.insert_faces(lib.con, ids[ph], [face])
    return lib


def side_by_side(out: Path, *photos: Path) -> Path:
    """One group photo: the photos in a row on a grey ground, a margin round each face."""
    ims = [Image.open(p).convert("RGB") for p in photos]
    row = Image.new("RGB", (sum(i.width + 80 for i in ims), max(i.height for i in ims) + 80),
                    (120, 120, 120))  # fmt: skip
    x = 40
    for im in ims:
        row.paste(im, (x, 40))
        x += im.width + 80
    row.save(out)
    return out


def write_dng(rgb: np.ndarray, path: Path, taken: str | None = None, orientation: int = 1) -> Path:
    """A camera RAW (DNG) of this picture as a sensor behind an RGGB Bayer filter saw it,
    at twice its size, so that developed at half its sensor's size it is the picture's own
    size again; `taken` its DateTime, `orientation` how the camera was held (EXIF's 1–8)."""
    import tifffile

    linear = np.rint((np.asarray(rgb) / 255.0) ** 2.2 * 4095).astype(np.uint16)  # 12 bits
    big = np.repeat(np.repeat(linear, 2, 0), 2, 1)  # a sensor counts light: no gamma yet
    cfa = np.empty(big.shape[:2], np.uint16)
    for (y, x), c in {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}.items():
        cfa[y::2, x::2] = big[y::2, x::2, c]
    xyz_to_srgb = (32406, -15372, -4986, -9689, 18758, 415, 557, -2040, 10570)  # the sensor's
    matrix = [v for m in xyz_to_srgb for v in (m, 10000)]  # colours are sRGB's, in D65 light
    tags = [(33421, "H", 2, (2, 2)), (33422, "B", 4, (0, 1, 1, 2)),  # the Bayer pattern
            (50706, "B", 4, (1, 4, 0, 0)), (50708, "s", 0, "facetrain test camera"),
            (50717, "I", 1, 4095), (50721, "2i", 9, matrix), (50778, "H", 1, 21),
            (50728, "2I", 3, (1, 1, 1, 1, 1, 1)), (274, "H", 1, orientation)]  # fmt: skip
    if taken is not None:
        tags.append((306, "s", 0, taken))
    tifffile.imwrite(path, cfa, photometric=32803, extratags=tags, subfiletype=0)
    return path


def chromium_api():
    """(chromium's path, playwright's sync API), or the test skipped saying what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium here (make test installs Debian's chromium where it may)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    return chromium, sync_api


def axe_violations(page) -> list[str]:
    """What axe-core, the rules browsers' own accessibility audits apply, finds on the page
    as it is shown: "rule (impact): the first element" for each rule broken."""
    axe = pytest.importorskip("axe_playwright_python.sync_playwright", reason="no axe-core")
    found = axe.Axe().run(page).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['nodes'][0]['html'][:160]}" for v in found]


class Stopper:
    """Stands in for a kill between two parts of a long job: the wrapped function raises
    KeyboardInterrupt (or `raises`: a full disk, say) once `at` calls have run (never while
    `at` is -1); `calls` holds what `record` made of each call's arguments."""

    def __init__(self, monkeypatch, owner, name: str, record, raises=KeyboardInterrupt):
        self.calls, self.at, real = [], -1, getattr(owner, name)

        def wrapped(*args, **kw):
            if len(self.calls) == self.at:
                raise raises
            self.calls.append(record(*args, **kw))
            return real(*args, **kw)

        monkeypatch.setattr(owner, name, wrapped)

    def reset(self, at: int = -1) -> None:
        self.calls, self.at = [], at


ORIGIN = "http://127.0.0.1:8765"


def local_client(db) -> TestClient:
    """A client as the owner's browser on the page: local Host, the page's Origin."""
    return TestClient(create_app(db), base_url=ORIGIN, headers={"Origin": ORIGIN})


def free_port() -> int:
    """A local TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_library(db):
    """The library's web app served on a free local port: (server, thread, port)."""
    return serve_app(create_app(db))


@contextlib.contextmanager
def page_on(db, width: int = 1100, height: int = 760):
    """A page of headless Chromium and the library served to it: (page, the server's
    address), both closed after the block; the test skipped where there is no chromium."""
    chromium, sync_api = chromium_api()
    server, thread, port = serve_library(db)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                yield (
                    browser.new_page(viewport={"width": width, "height": height}),
                    (f"http://127.0.0.1:{port}"),
                )
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve_app(app):
    """(server, thread, port) of an app served on a free local port, started."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, port


def confirm_all(db) -> dict[str, list]:
    """Every face confirmed as a person of its own, named after its photo's file (the
    second and later faces of a photo, left to right: `file #k` — two faces of one photo
    are two people); {person name: [photo file, ...]} as the library holds them."""
    from facetrain.library import store
    from facetrain.library.library import Library

    with Library(db) as lib, store.transaction(lib.con):
        for pid, path in lib.con.execute("SELECT id, path FROM photos WHERE status = 'ok'"):
            faces = sorted(store.faces_of_photo(lib.con, pid), key=lambda r: r["x1"])
            for k, face in enumerate(faces):
                person = store.new_person(lib.con)
                store.name_person(lib.con, person, Path(path).name + (f" #{k}" if k else ""))
                store.assign(lib.con, [(person, face["id"])], confirmed=1)
    return confirmed_names(db)


def confirmed_names(db) -> dict[str, list]:
    """{person name: [photo file, ...]} of the confirmed faces, in photo then x order."""
    import sqlite3

    con = sqlite3.connect(db)
    rows = con.execute("SELECT p.path, pe.name FROM faces f JOIN photos p ON p.id = f.photo_id"
                       " JOIN people pe ON pe.id = f.person_id WHERE f.confirmed = 1"
                       " ORDER BY p.path, f.x1").fetchall()  # fmt: skip
    con.close()
    out: dict[str, list] = {}
    for path, name in rows:
        out.setdefault(name, []).append(Path(path).name)
    return out


def population(people: int, per: int, spread: float, seed: int, dim: int = 32):
    """Unit embeddings of `people` x `per` faces: people's centres `spread` apart (squared
    L2 between two centres ≈ spread), each face near its centre (squared L2 ≈ spread/6)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(dim)
    base /= np.linalg.norm(base)
    centres = base + np.sqrt(spread / 2) * rng.standard_normal((people, dim)) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = np.sqrt(spread / 12) * rng.standard_normal((people, per, dim)) / np.sqrt(dim)
    emb = (centres[:, None, :] + noise).reshape(-1, dim)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), np.repeat(np.arange(people), per)


def bbt_library(tmp_path: Path, people=("amy", "penny", "howard", "leonard", "sheldon")):
    """A library of BBT's reference faces of `people` and its group photos, scanned with
    dlib's model and stacked: (db, photos folder). Skips without the real data."""
    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    photos = tmp_path / "photos"
    for who in people:
        shutil.copytree(BBT / "reference" / who, photos / who)
    shutil.copytree(BBT / "group", photos / "group")
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--model", "pretrained:dlib_resnet", "--db", db)
    cli("library", "cluster", "--db", db)
    return db, photos


def name_by_folder(db: Path, photos: Path, people) -> None:
    """As an owner would: every reference face confirmed as the person of its folder."""
    from facetrain.library import store
    from facetrain.library.library import Library

    with Library(db) as lib:
        rows = lib.con.execute("SELECT f.id, p.path FROM faces f JOIN photos p ON "
                               "p.id = f.photo_id WHERE f.usable = 1").fetchall()  # fmt: skip
        with store.transaction(lib.con):
            for who in people:
                pid = store.new_person(lib.con)
                store.name_person(lib.con, pid, who.title())
                faces = [r["id"] for r in rows if Path(r["path"]).parent.name == who]
                store.assign(lib.con, [(pid, f) for f in faces], confirmed=1)


def started_together(script: str, cache: Path, log: Path, n: int = 3) -> tuple[set, list]:
    """`n` processes running `script`, given an instant to start at and `log` (argv 1 and 2),
    with the cache folder `cache`: what they printed, and the lines of `log` (each process
    logs its pid when it does the work under test). Each must end well."""
    import os
    import subprocess
    import sys

    start, env = str(time.time() + 3), os.environ | {"FACETRAIN_CACHE": str(cache)}
    runs = [subprocess.Popen([sys.executable, "-c", script, start, str(log)], env=env,
                             stdout=subprocess.PIPE, text=True) for _ in range(n)]  # fmt: skip
    printed = {r.communicate(timeout=120)[0].strip() for r in runs}
    assert all(r.returncode == 0 for r in runs)
    return printed, log.read_text().split()
