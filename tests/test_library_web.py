"""The library's local web UI: the API, what it refuses to serve, and a real browser."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrain.cli import app
from facetrain.library.web import PAGE, create_app
from helpers import make_model

runner = CliRunner()


@pytest.fixture
def library(photos, tmp_path):  # noqa: F811
    db = tmp_path / "lib.db"
    model = make_model(tmp_path / "m.safetensors")
    for args in (["scan", str(photos), "--model", str(model)], ["cluster", "--threshold", "1e-6"]):
        res = runner.invoke(app, ["library", *args, "--db", str(db)])
        assert res.exit_code == 0, res.output
    return db


ORIGIN = "http://127.0.0.1:8765"


def local_client(db) -> TestClient:
    """A client as the owner's browser on the page: local Host, the page's Origin."""
    return TestClient(create_app(db), base_url=ORIGIN, headers={"Origin": ORIGIN})


def test_api_actions_and_nothing_outside_the_library(library):
    client = local_client(library)
    page = client.get("/")
    assert page.status_code == 200 and "facetrain library" in page.text
    assert "http://" not in PAGE and "https://" not in PAGE  # nothing loaded from the network
    people = client.get("/api/people").json()
    a, b = people[0]["id"], people[1]["id"]
    face = people[0]["face_ids"][0]
    img = client.get(f"/face/{face}.jpg")
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    assert client.post(f"/api/stacks/{a}/name", json={"name": "Grandma"}).status_code == 200
    names = {p["id"]: p["name"] for p in client.get("/api/people").json()}
    assert names[a] == "Grandma"
    r = client.post(f"/api/stacks/{a}/merge", json={"other": b})
    assert r.status_code in (200, 400)  # 400: the two share a photo, with the reason
    assert client.post("/api/undo").json()["message"].startswith("undone")
    for bad in ("/face/999999.jpg", "/photo/999999.jpg", "/face/..%2F..%2Fetc%2Fpasswd",
                "/photo/../../etc/passwd", "/etc/passwd", "/static/../../etc/passwd"):  # fmt: skip
        assert client.get(bad).status_code in (404, 422), bad
    assert client.post("/api/stacks/999999/hide").status_code == 400
    for huge in ("/face/99999999999999999999.jpg", "/photo/-1.jpg"):  # not a 500
        assert client.get(huge).status_code == 422, huge
    assert client.post("/api/stacks/99999999999999999999/hide").status_code == 422
    big = client.post(f"/api/stacks/{a}/merge", json={"other": 2**70})
    assert big.status_code == 422


def test_other_sites_cannot_change_or_read_the_library(library):
    client = local_client(library)
    stack = client.get("/api/people").json()[0]["id"]
    hide = f"/api/stacks/{stack}/hide"
    # a page of another site posting through the owner's browser (CSRF): refused, no change
    for origin in ("http://evil.example", "http://127.0.0.1:9999", "null"):
        r = client.post(hide, headers={"Origin": origin})
        assert r.status_code == 403 and "refused" in r.text, origin
    bare = TestClient(create_app(library), base_url=ORIGIN)  # no Origin at all
    assert bare.post(hide).status_code == 403
    assert bare.get("/api/people").status_code == 200  # reading needs no Origin
    assert stack in [p["id"] for p in client.get("/api/people").json()]  # not hidden
    # DNS rebinding: another name resolving to 127.0.0.1 — every route refused
    rebound = TestClient(create_app(library), base_url="http://evil.example:8765")
    for path in ("/", "/api/people", f"/api/stacks/{stack}/photos"):
        assert rebound.get(path).status_code == 403, path
    assert rebound.post(hide, headers={"Origin": "http://evil.example:8765"}).status_code == 403
    # the owner's own page still works, on 127.0.0.1 and on localhost
    assert client.post(hide).status_code == 200
    home = "http://localhost:8765"
    other = TestClient(create_app(library), base_url=home, headers={"Origin": home})
    assert other.post("/api/undo").status_code == 200
    # served on a LAN address: that name is answered too, foreign ones still are not
    lan = TestClient(create_app(library, "192.168.1.20"), base_url="http://192.168.1.20:8765")
    assert lan.get("/api/people").status_code == 200


def test_thumbnails_are_cut_once_and_kept(library, monkeypatch):
    from facetrain.library.library import Library

    client = local_client(library)
    face = client.get("/api/people").json()[0]["face_ids"][0]
    first = client.get(f"/face/{face}.jpg").content
    cached = list((library.parent / "lib.db.thumbs").iterdir())
    assert len(cached) == 1 and cached[0].read_bytes() == first
    assert oct(cached[0].stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    def no_decoding(*a, **k):
        raise AssertionError("the photo was decoded again")

    monkeypatch.setattr(Library, "photo", no_decoding)
    assert client.get(f"/face/{face}.jpg").content == first


def _umask() -> int:
    import os

    m = os.umask(0o022)
    os.umask(m)
    return m


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_browser_names_a_stack_and_undoes_it(library):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium here (make setup installs Debian's chromium where it may)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(library), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            first = page.locator(".stack").first
            first.wait_for()
            stack = int(first.get_attribute("data-stack"))
            img = first.locator("img").first
            # the page renders the stacks first and the thumbnails arrive after: wait for the
            # load to finish (a broken image also completes, with naturalWidth 0)
            page.wait_for_function("i => i.complete", arg=img.element_handle())
            assert img.evaluate("i => i.naturalWidth > 0"), "a face thumbnail did not load"
            first.locator("input.name").fill("Aunt Flo")
            first.locator("button.do-name").click()
            page.wait_for_function("document.querySelector('#status').textContent.includes('now')")
            assert page.locator("h3", has_text="Aunt Flo").count() == 1
            con = sqlite3.connect(library)
            assert con.execute("SELECT name FROM people WHERE id = ?", (stack,)).fetchone()[0] == (
                "Aunt Flo"
            )
            page.locator("#undo").click()
            page.wait_for_function(
                "document.querySelector('#status').textContent.includes('undone')"
            )
            assert (
                con.execute("SELECT name FROM people WHERE id = ?", (stack,)).fetchone()[0] is None
            )
            page.locator(".stack").first.locator("button.do-photos").click()
            page.locator("#photos img").first.wait_for()
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
