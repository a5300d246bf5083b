"""`facetrain library serve`: the stacks in a browser — name, merge, split, reject, hide, undo.

Local by design: it binds to 127.0.0.1 unless told otherwise, the page loads nothing from
the network (inline CSS and JS), and images are served only by face or photo *id* from the
library — no URL names a file, so nothing outside the library can be reached through it.
Every button is one curating action of `facetrain.library.curate`, logged and undoable.
"""

from __future__ import annotations

import io
import os

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from facetrain.library import curate
from facetrain.library.db import LibraryError, connect, model_record


class NameBody(BaseModel):
    name: str


class MergeBody(BaseModel):
    other: int


def _jpeg(img, size: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(img)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def create_app(db_path: str | os.PathLike) -> FastAPI:
    app = FastAPI(title="facetrain library", docs_url=None, redoc_url=None, openapi_url=None)

    def con():
        return connect(db_path)

    def act(fn, *args) -> dict:
        c = con()
        try:
            return {"message": fn(c, *args)}
        except LibraryError as e:
            raise HTTPException(400, str(e)) from None
        finally:
            c.close()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.get("/api/people")
    def api_people() -> list[dict]:
        c = con()
        try:
            out = []
            for p in curate.people(c):
                faces = [r[0] for r in c.execute(
                    "SELECT id FROM faces WHERE person_id = ? ORDER BY confirmed DESC, id LIMIT 12",
                    (p["id"],))]  # fmt: skip
                out.append(p | {"face_ids": faces})
            return out
        finally:
            c.close()

    @app.post("/api/stacks/{stack}/name")
    def api_name(stack: int, body: NameBody) -> dict:
        return act(curate.name, str(stack), body.name)

    @app.post("/api/stacks/{stack}/merge")
    def api_merge(stack: int, body: MergeBody) -> dict:
        return act(curate.merge, str(stack), str(body.other))

    @app.post("/api/stacks/{stack}/split")
    def api_split(stack: int) -> dict:
        c = con()
        rec = model_record(c) or {}
        c.close()
        thr = 0.7 * float(rec.get("threshold") or 1.0)
        return act(curate.split, str(stack), thr, rec.get("distance", "squared_l2"))

    @app.post("/api/stacks/{stack}/hide")
    def api_hide(stack: int) -> dict:
        return act(curate.hide, str(stack))

    @app.post("/api/faces/{face}/reject")
    def api_reject(face: int) -> dict:
        return act(curate.reject, face)

    @app.post("/api/undo")
    def api_undo() -> dict:
        c = con()
        try:
            done = curate.undo(c)
        finally:
            c.close()
        return {"message": "; ".join(f"undone: {d}" for d in done) or "nothing to undo"}

    def _photo(photo_id: int):
        from facetrain.data.images import ImageError, load_rgb

        c = con()
        row = c.execute("SELECT path FROM photos WHERE id = ?", (photo_id,)).fetchone()
        c.close()
        if row is None:
            raise HTTPException(404, "no such photo")
        try:
            return load_rgb(row[0])
        except (ImageError, OSError):
            raise HTTPException(404, "photo unreadable") from None

    @app.get("/face/{face_id}.jpg")
    def face(face_id: int) -> Response:
        c = con()
        row = c.execute("SELECT photo_id, x1, y1, x2, y2 FROM faces WHERE id = ?", (face_id,))
        row = row.fetchone()
        c.close()
        if row is None:
            raise HTTPException(404, "no such face")
        img = _photo(row[0])
        x1, y1, x2, y2 = row[1:]
        m = 0.25 * max(x2 - x1, y2 - y1)
        h, w = img.shape[:2]
        crop = img[
            max(0, int(y1 - m)) : min(h, int(y2 + m)), max(0, int(x1 - m)) : min(w, int(x2 + m))
        ]
        return Response(_jpeg(crop, 112), media_type="image/jpeg")

    @app.get("/photo/{photo_id}.jpg")
    def photo(photo_id: int) -> Response:
        return Response(_jpeg(_photo(photo_id), 480), media_type="image/jpeg")

    @app.get("/api/stacks/{stack}/photos")
    def stack_photos(stack: int) -> list[int]:
        c = con()
        try:
            return [r[0] for r in c.execute(
                "SELECT DISTINCT photo_id FROM faces WHERE person_id = ? ORDER BY photo_id",
                (stack,))]  # fmt: skip
        finally:
            c.close()

    return app


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
