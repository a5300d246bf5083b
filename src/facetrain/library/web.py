"""`facetrain library serve`: the stacks in a browser — name, merge, split, reject, hide, undo.

Local by design: it binds to 127.0.0.1 unless told otherwise, the page loads nothing from
the network (inline CSS and JS), and images are served only by face or photo *id* from the
library — no URL names a file, so nothing outside the library can be reached through it.
Other sites cannot reach it through the owner's browser either: a request whose `Host` is
not this server's (DNS rebinding) is refused, and so is every state-changing request whose
`Origin` is not the page's own (cross-site request forgery) — both 403.
Every button is one curating action of `facetrain.library.curate`, logged and undoable.
"""

from __future__ import annotations

import os
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from facetrain.data.images import to_jpeg
from facetrain.library.library import Library
from facetrain.library.store import LibraryError


class NameBody(BaseModel):
    name: str


class MergeBody(BaseModel):
    other: Annotated[int, Field(ge=0, le=2**63 - 1)]


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Id = Annotated[int, Path(ge=0, le=2**63 - 1)]  # SQLite's integers: larger ids are a 422


def allowed_hosts(bind: str) -> frozenset[str] | None:
    """The host names requests may carry: the local names, and the bound address when it is
    another; None (any) when bound to every interface (the CLI warns)."""
    if bind in ANY_ADDRESS:
        return None
    return LOCAL_HOSTS | {bind.lower().strip("[]")}


def refusal(method: str, host: str, origin: str | None, hosts) -> str | None:
    """Why a request is refused (None: it is not): a foreign Host, or a state-changing
    request without the page's own Origin."""
    name = urlsplit(f"//{host}").hostname if host else None
    if hosts is not None and name not in hosts:
        return f"unknown Host {host!r}: this server answers as {', '.join(sorted(hosts))}"
    if method not in SAFE_METHODS and (origin is None or urlsplit(origin).netloc != host):
        return f"{method} from origin {origin!r} refused: only this page may change the library"
    return None


def create_app(db_path: str | os.PathLike, host: str = "127.0.0.1") -> FastAPI:
    """The page and its JSON routes; each request opens the library, acts, closes it.
    `host`: the address it is served on (decides which Host headers it answers)."""
    app = FastAPI(title="facetrain library", docs_url=None, redoc_url=None, openapi_url=None)
    hosts = allowed_hosts(host)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        h = request.headers
        why = refusal(request.method, h.get("host", ""), h.get("origin"), hosts)
        if why is not None:
            return PlainTextResponse(why, status_code=403)
        return await call_next(request)

    def act(method: str, *args, status: int = 400):
        with Library(db_path) as lib:
            try:
                return getattr(lib, method)(*args)
            except LibraryError as e:
                raise HTTPException(status, str(e)) from None

    _views(app, act, db_path)
    _actions(app, act)
    return app


def _views(app: FastAPI, act, db_path) -> None:
    """What the page shows: itself, the stacks, faces and photos (GET, no change)."""

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.get("/api/people")
    def api_people() -> list[dict]:
        with Library(db_path) as lib:
            return [p | {"face_ids": lib.face_ids(p["id"], 12)} for p in lib.people()]

    @app.get("/api/stacks/{stack}/photos")
    def stack_photos(stack: Id) -> list[int]:
        return act("stack_photos", stack)

    @app.get("/face/{face_id}.jpg")
    def face(face_id: Id) -> Response:
        return Response(act("face_thumbnail", face_id, status=404), media_type="image/jpeg")

    @app.get("/photo/{photo_id}.jpg")
    def photo(photo_id: Id) -> Response:
        return Response(to_jpeg(act("photo", photo_id, status=404), 480), media_type="image/jpeg")


def _actions(app: FastAPI, act) -> None:
    """The owner's actions (POST), each one curating step of the library."""

    @app.post("/api/stacks/{stack}/name")
    def api_name(stack: Id, body: NameBody) -> dict:
        return {"message": act("name", str(stack), body.name)}

    @app.post("/api/stacks/{stack}/merge")
    def api_merge(stack: Id, body: MergeBody) -> dict:
        return {"message": act("merge", str(stack), str(body.other))}

    @app.post("/api/stacks/{stack}/split")
    def api_split(stack: Id) -> dict:
        return {"message": act("split", str(stack))}

    @app.post("/api/stacks/{stack}/hide")
    def api_hide(stack: Id) -> dict:
        return {"message": act("hide", str(stack))}

    @app.post("/api/faces/{face}/reject")
    def api_reject(face: Id) -> dict:
        return {"message": act("reject", face)}

    @app.post("/api/undo")
    def api_undo() -> dict:
        done = act("undo")
        return {"message": "; ".join(f"undone: {d}" for d in done) or "nothing to undo"}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facetrain library</title>
<style>
body{font-family:sans-serif;margin:1.5em;background:#fafafa}
.stack{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em;margin:.6em 0}
.stack h3{margin:.2em 0}.faces{display:flex;flex-wrap:wrap;gap:4px}
.face{position:relative}.face img{width:84px;height:84px;object-fit:cover;border-radius:4px}
.face button{position:absolute;top:0;right:0;font-size:10px;padding:0 3px}
#status{position:sticky;top:0;background:#ffd;padding:.3em}
.photos img{max-height:240px;margin:3px}
</style></head><body>
<h1>facetrain library</h1>
<div id="status">ready</div>
<button id="undo">Undo</button>
<div id="stacks"></div>
<div id="photos" class="photos"></div>
<script>
const $ = (s, e = document) => e.querySelector(s);
const esc = s => String(s).replace(/[&<>"']/g,
  c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
async function call(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify(body || {})});
  const j = await r.json();
  await load();  // redraw first, so the status line never announces a change not yet shown
  $("#status").textContent = r.ok ? j.message : ("error: " + j.detail);
}
async function showPhotos(id) {
  const ids = await (await fetch(`/api/stacks/${id}/photos`)).json();
  $("#photos").innerHTML = `<h2>photos of stack ${id}</h2>` +
    ids.map(p => `<img alt="photo ${p}" src="/photo/${p}.jpg">`).join("");
}
async function load() {
  const people = await (await fetch("/api/people")).json();
  const box = $("#stacks");
  box.innerHTML = "";
  for (const p of people) {
    if (p.hidden) continue;
    const d = document.createElement("div");
    d.className = "stack";
    d.dataset.stack = p.id;
    const others = people.filter(o => o.id !== p.id && !o.hidden)
      .map(o => `<option value="${o.id}">${esc(o.name || "stack " + o.id)}</option>`).join("");
    d.innerHTML = `<h3>${esc(p.name ? p.name : "stack " + p.id)} <small>(${p.faces} faces,
      ${p.photos} photos)</small></h3>
      <div class="faces">${p.face_ids.map(f => `<span class="face"><img alt="face ${f}"
        src="/face/${f}.jpg"><button class="reject" data-face="${f}" title="not this person"
        >x</button></span>`).join("")}</div>
      <input class="name" placeholder="name" value="${esc(p.name || "")}">
      <button class="do-name">Name</button>
      <select class="other">${others}</select><button class="do-merge">Merge into this</button>
      <button class="do-split">Split</button><button class="do-hide">Hide</button>
      <button class="do-photos">Photos</button>`;
    $(".do-name", d).onclick = () => call(`/api/stacks/${p.id}/name`, {name: $(".name", d).value});
    $(".do-merge", d).onclick = () =>
      call(`/api/stacks/${p.id}/merge`, {other: Number($(".other", d).value)});
    $(".do-split", d).onclick = () => call(`/api/stacks/${p.id}/split`);
    $(".do-hide", d).onclick = () => call(`/api/stacks/${p.id}/hide`);
    $(".do-photos", d).onclick = () => showPhotos(p.id);
    d.querySelectorAll(".reject").forEach(b =>
      b.onclick = () => call(`/api/faces/${b.dataset.face}/reject`));
    box.appendChild(d);
  }
}
$("#undo").onclick = () => call("/api/undo");
load();
</script></body></html>
"""
