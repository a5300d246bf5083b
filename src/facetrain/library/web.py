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

import collections
import contextlib
import functools
import os
import pathlib
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from facetrain.errors import FacetrainError
from facetrain.library.library import Library, dated
from facetrain.library.store import LibraryError
from facetrain.lock import BusyError
from facetrain.open_set import MARGIN

SUGGESTED = 5  # "same person?" stacks shown on a person's page
PACE_OF = 20  # the photos a look for new photos measures its pace on


class NameBody(BaseModel):
    name: str


class MoveBody(BaseModel):
    """A face's person: a stack (`to`), or a name no one has yet (`name`: a new person)."""

    to: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=1000)] | None = None


class MoveManyBody(BaseModel):
    faces: Annotated[list[Annotated[int, Field(ge=0, le=2**63 - 1)]], Field(max_length=10_000)]
    to: Annotated[int, Field(ge=0, le=2**63 - 1)]


def _move_target(body: MoveBody) -> str:
    """What `Library.move` takes for the body: a stack's id, or a name (never read as one)."""
    if (body.to is None) == (body.name is None):
        raise HTTPException(422, "say the stack (`to`) or a new person's name (`name`)")
    if body.name is not None and body.name.strip().isdigit():
        raise HTTPException(400, "a name cannot be only digits: add a letter")
    return str(body.to) if body.name is None else body.name


class MergeBody(BaseModel):
    other: Annotated[int, Field(ge=0, le=2**63 - 1)]


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Id = Annotated[int, Path(ge=0, le=2**63 - 1)]  # SQLite's integers: larger ids are a 422
WithOpt = Annotated[list[Annotated[int, Field(ge=0, le=2**63 - 1)]], Query(alias="with")]


def allowed_hosts(bind: str) -> frozenset[str] | None:
    """The host names requests may carry: the local names, and the bound address when it is
    another; None (any) when bound to every interface (the CLI warns)."""
    if bind in ANY_ADDRESS:
        return None
    return LOCAL_HOSTS | {bind.lower().strip("[]")}


def refusal(method: str, host: str, origin: str | None, hosts, site: str | None = None,
            mode: str | None = None, path: str = "/") -> str | None:  # fmt: skip
    """Why a request is refused (None: it is not): a foreign Host; a state-changing request
    without the page's own Origin; or a read another site's page asked for — an
    `<img src=…/photo/3.jpg>` on a foreign page told it which photos exist (the browser
    says who asks in `Sec-Fetch-Site`; only a plain navigation to a page of the UI, a link
    or a bookmark, may come from elsewhere)."""
    name = urlsplit(f"//{host}").hostname if host else None
    if hosts is not None and name not in hosts:
        return f"unknown Host {host!r}: this server answers as {', '.join(sorted(hosts))}"
    if method not in SAFE_METHODS and (origin is None or urlsplit(origin).netloc != host):
        return f"{method} from origin {origin!r} refused: only this page may change the library"
    if site in ("cross-site", "same-site") and not (mode == "navigate" and is_page(path)):
        return f"{path} asked for by another site's page ({site}): refused"
    return None


def is_page(path: str) -> bool:
    """The UI's own pages (what a link may open): the people page, a person's page and a
    photo's."""
    kind, _, ref = path[1:].partition("/")
    return path == "/" or (kind in ("person", "photos") and ref.isdigit())


# The page may be shown only as itself: never inside another site's frame (a frame made
# invisible turned one click into Undo), and it runs only its own script.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def create_app(db_path: str | os.PathLike, host: str = "127.0.0.1") -> FastAPI:
    """The page and its JSON routes; each request opens the library, acts, closes it.
    `host`: the address it is served on (decides which Host headers it answers)."""
    app = FastAPI(title="facetrain library", docs_url=None, redoc_url=None, openapi_url=None)
    hosts = allowed_hosts(host)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        h = request.headers
        fetch = (h.get("sec-fetch-site"), h.get("sec-fetch-mode"), request.url.path)
        why = refusal(request.method, h.get("host", ""), h.get("origin"), hosts, *fetch)
        response = PlainTextResponse(why, status_code=403) if why else await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = CSP
        return response

    one_change = threading.Lock()  # the page's own changes, one after another
    looking = ScanAgain(db_path, one_change)

    def act(method: str, *args, status: int = 400, lock: bool = True):
        """One library method, the library locked for a change and open unlocked for a
        view. Two changes from the page wait their turn (they blamed the server itself as
        the process in the way); 409 only while another process, a scan say, holds it,
        or while the page looks for new photos."""
        if lock and looking.view()["running"]:
            raise HTTPException(409, "looking for new photos: changes wait until it is done")
        with one_change if lock else contextlib.nullcontext():
            return _act(method, *args, status=status, lock=lock)

    def _act(method: str, *args, status: int = 400, lock: bool = True):
        try:
            lib = Library(db_path, lock=lock)
        except BusyError as e:
            raise HTTPException(409, str(e)) from None
        except LibraryError as e:  # the library file gone or damaged while serving
            raise HTTPException(503, f"the library cannot be opened: {e}") from None
        with lib:
            try:
                return getattr(lib, method)(*args)
            except LibraryError as e:
                raise HTTPException(status, str(e)) from None
            except (sqlite3.Error, OSError) as e:  # a full disk, say: nothing half-done
                raise HTTPException(503, f"the library could not do that: {e}") from None

    _views(app, functools.partial(act, lock=False), db_path)
    _actions(app, act)
    _personal(app, act)
    _recognise(app, functools.partial(act, lock=False), db_path)
    _look_for_new(app, looking, functools.partial(act, lock=False))
    return app


def _views(app: FastAPI, act, db_path) -> None:
    """What the page shows: itself, the stacks, faces and photos (GET, no change)."""

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.get("/person/{stack}", response_class=HTMLResponse)
    def person_page(stack: Id) -> str:  # a person's own URL: the page opens on them
        return PAGE

    @app.get("/api/people")
    def api_people() -> list[dict]:
        return act("people_with_covers")

    stacked = KeptWhileUnchanged(db_path, _frozen_stacked)

    @app.get("/api/stacks/{stack}/suggestions")
    def api_suggestions(stack: Id) -> list[dict]:
        return act("suggestions", stack, SUGGESTED, stacked.get)

    @app.get("/api/stacks/{stack}")
    def api_stack(stack: Id) -> dict:
        return act("stack_view", stack, status=404)

    @app.get("/api/stacks/{stack}/photos")
    def stack_photos(stack: Id, others: WithOpt = ()) -> dict:
        """The stack's photos, the latest first; `with`: only those these people are on
        too."""
        return dated(act("photos", [stack, *others], status=404))

    @app.get("/api/personal")
    def api_personal() -> dict:
        return {"personal": act("personal")}

    _pictures(app, act)


def _pictures(app: FastAPI, act) -> None:
    """The photos and faces the page shows (GET, no change), by id only."""

    @app.get("/photos/{photo}", response_class=HTMLResponse)
    def photo_page(photo: Id) -> str:  # a photo's own URL: the page opens on it
        return PAGE

    @app.get("/api/photos/{photo}")
    def api_photo(photo: Id) -> dict:
        return act("photo_view", photo, status=404)

    @app.get("/face/{face_id}.jpg")
    def face(face_id: Id) -> Response:
        return Response(act("face_thumbnail", face_id, status=404), media_type="image/jpeg")

    @app.get("/photo/{photo_id}.jpg")
    def photo(photo_id: Id, size: Annotated[int, Query(ge=64, le=4096)] = 480) -> Response:
        jpeg = act("photo_jpeg", photo_id, size, status=404)
        return Response(jpeg, media_type="image/jpeg")


def _frozen_stacked(lib: Library) -> tuple:
    """`Library.stacked`, its arrays made read-only: shared by every view from now on."""
    value = lib.stacked()
    for a in value:
        a.flags.writeable = False
    return value


class KeptWhileUnchanged:
    """What `make(library)` returns, kept from one request to the next and made again only
    when the library changed: SQLite's `data_version`, asked on a connection of the
    cache's own, moves with every commit by any other connection or process, and a file
    put in the library's place is another file. The faces of visible stacks ("same
    person?": at a million faces, reading them was 6 s of a view's 7–9) and the namer of
    "who is this?" (3.8 s at 200,000 faces, bench/namer_scale.py) are kept so."""

    def __init__(self, db_path: str | os.PathLike, make: Callable[[Library], object]):
        self.path, self.make, self.lock = db_path, make, threading.Lock()
        self.watch: sqlite3.Connection | None = None
        self.key: tuple | None = None
        self.value = None

    def get(self, lib: Library):
        with self.lock:
            key = self._version()  # before the read: a commit in between reads again later
            if key != self.key:
                self.value, self.key = self.make(lib), key
            return self.value

    def _version(self) -> tuple:
        """(the file as it is — another file, even one given a freed inode, has another
        ctime — and its data_version); a new file gets a new watching connection."""
        st = os.stat(self.path)
        file = (st.st_dev, st.st_ino, st.st_ctime_ns)
        if self.watch is None or self.key is None or self.key[0] != file:
            if self.watch is not None:
                self.watch.close()
            uri = pathlib.Path(self.path).resolve().as_uri() + "?mode=ro"  # a `?` in a name
            self.watch = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return file, self.watch.execute("PRAGMA data_version").fetchone()[0]


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

    @app.post("/api/stacks/{stack}/unhide")
    def api_unhide(stack: Id) -> dict:
        return {"message": act("unhide", str(stack))}

    @app.post("/api/faces/move")
    def api_move_many(body: MoveManyBody) -> dict:
        return {"message": act("move_faces", body.faces, str(body.to))}

    @app.post("/api/faces/{face}/move")
    def api_move(face: Id, body: MoveBody) -> dict:
        return {"message": act("move", face, _move_target(body))}

    @app.post("/api/faces/{face}/reject")
    def api_reject(face: Id) -> dict:
        return {"message": act("reject", face)}

    @app.post("/api/undo")
    def api_undo() -> dict:
        done = act("undo")
        return {"message": "; ".join(f"undone: {d}" for d in done) or "nothing to undo"}


class ScanAgain:
    """Look for new photos: the folders the library was scanned from, scanned again
    (`Library.scan_again`) in a thread of the server's own while the page stays in use;
    the page asks how far it is. One look at a time, the library locked for it: the
    page's changes wait (409), its views and "who is this?" go on. A server stopped
    midway loses nothing: a photo is one transaction, and the next look goes on from it."""

    def __init__(self, db_path: str | os.PathLike, one_change: threading.Lock):
        self.path, self.one_change, self.lock = db_path, one_change, threading.Lock()
        self.state: dict = {"running": False}
        self.stopping = threading.Event()
        self.recent: collections.deque = collections.deque(maxlen=PACE_OF)  # (time, done)

    def start(self) -> dict:
        with self.lock:
            if self.state["running"]:
                return {"message": "already looking for new photos"}
            self.state = {"running": True, "folder": None, "done": 0, "total": None}
            self.stopping.clear()
            self.recent.clear()
        threading.Thread(target=self._run, daemon=True, name="look-for-new-photos").start()
        return {"message": "looking for new photos"}

    def stop(self) -> dict:
        """Stop after the photo being recorded: what was found so far is kept."""
        with self.lock:
            if not self.state["running"]:
                return {"message": "not looking for new photos"}
            self.stopping.set()
            self.state["stopping"] = True
        return {"message": "stopping after this photo"}

    def view(self) -> dict:
        """{running, folder, folder_number, folder_count, done, total, eta_s} while it
        runs; then {running: False, message or error}. The time left is at the pace of
        the last photos: the unchanged ones at the start, a thousand a second, would
        promise far too little."""
        with self.lock:
            state, recent = dict(self.state), list(self.recent)
        if state["running"] and state["total"] and len(recent) > 1 and recent[-1][0] > recent[0][0]:
            (t0, d0), (t1, d1) = recent[0], recent[-1]
            state["eta_s"] = round((t1 - t0) / (d1 - d0) * (state["total"] - d1))
        return state

    def _run(self) -> None:
        try:
            with self.one_change:  # a change of the page's under way ends first
                lib = Library(self.path)
            with lib:
                done = list(lib.scan_again(lib.model(), on_folder=self._folder,
                                           on_progress=self._progress,
                                           stop=self.stopping.is_set))  # fmt: skip
                never = any(not isinstance(r, str) and r.to_stack for _, r in done)
                first = lib.cluster()[0] if never else None  # a library never stacked: now
            said = looked(done)
            if first is not None:
                said += f"; {first.faces} faces stacked per person: {first.stacks} stacks"
            end = {"message": said}
        except (FacetrainError, sqlite3.Error, OSError) as e:
            end = {"error": str(e)}
        except Exception as e:  # never a silent dead thread: the page says what happened
            end = {"error": f"{type(e).__name__}: {e}"}
        with self.lock:
            self.state = {"running": False} | end

    def _folder(self, folder: str, k: int, n: int) -> None:
        with self.lock:
            self.state.update(folder=folder, folder_number=k + 1, folder_count=n, done=0,
                              total=None)  # fmt: skip
            self.recent.clear()

    def _progress(self, done: int, total: int) -> None:
        with self.lock:
            self.state.update(done=done, total=total)
            self.recent.append((time.monotonic(), done))


def looked(done: list[tuple[str, object]]) -> str:
    """What a look for new photos did, in one line for the page."""
    reps = [r for _, r in done if not isinstance(r, str)]
    n = {k: sum(getattr(r, k) for r in reps) for k in (
        "new", "duplicates", "changed", "moved", "removed", "missing", "usable_faces",
        "joined_stacks", "new_stacks")}  # fmt: skip
    words = [("new", "new photos"), ("duplicates", "copies of photos it holds"),
             ("changed", "changed"), ("moved", "moved"), ("removed", "gone"),
             ("missing", "gone but kept for the names on them")]  # fmt: skip
    said = ", ".join(f"{n[k]} {w}" for k, w in words if n[k]) or "no new photos"
    line = f"looked in {len(reps)} folder{'' if len(reps) == 1 else 's'}: {said}"
    if n["usable_faces"]:
        line += (f"; {n['usable_faces']} faces found: {n['joined_stacks']} joined their people, "
                 f"{n['new_stacks']} new stacks")  # fmt: skip
    notes = sum(not why.startswith("duplicate of") for r in reps for why in r.problems.values())
    if notes:
        line += f"; {notes} files to look at (`facetrain library scan` lists them and why)"
    left = [f"{f} {why}" for f, why in done if isinstance(why, str)]
    line += "".join(f"; left as it was: {x}" for x in left)
    if any(r.stopped for r in reps):
        return f"stopped: {line}; the next look goes on from there"
    return line


def _look_for_new(app: FastAPI, looking: ScanAgain, act) -> None:
    """Look for new photos in the library's folders (POST starts it, GET says how far)."""

    @app.post("/api/scan")
    def api_scan() -> dict:
        return looking.start()

    @app.get("/api/scan")
    def api_scan_state() -> dict:
        """How far the look is; when none runs, also the folders it would look in (when
        the library can be read just now)."""
        state = looking.view()
        if not state["running"]:
            with contextlib.suppress(HTTPException):
                state["folders"] = act("folders")
        return state

    @app.post("/api/scan/stop")
    def api_scan_stop() -> dict:
        return looking.stop()


def _personal(app: FastAPI, act) -> None:
    """The owner's personal adapter: learn it from the named faces, or go back."""

    @app.post("/api/personalize")
    def api_personalize() -> dict:
        r = act("personalize")
        return {"message": f"learnt from {r['named_faces']} named faces: {r['verdict']}"}

    @app.post("/api/personalize/off")
    def api_personalize_off() -> dict:
        r = act("personalize_off")
        return {"message": "back to the plain model" if r["switched_off"] else
                "no personal adapter was on"}  # fmt: skip


MAX_PHOTO = 64 * 2**20  # "who is this?": a larger upload is refused (413) before it is read


def _kind(ext: str) -> str:
    """The uploaded file's extension when it names a photo format (a camera RAW is known by
    it), else none: the file is then read by its content."""
    from facetrain.data.images import is_image_name

    ext = ext.strip().lower()
    return ext if ext[1:].isalnum() and is_image_name("photo" + ext) else ""


def _namer_keeping(indexes: dict) -> Callable[[Library], object]:
    """`Library.namer`, the index of the library's faces kept in `indexes` for the next
    one: naming, merging or moving faces makes a new namer but leaves those faces as they
    were (at 200,000 faces the index is 3.5 s of its 3.8)."""
    from facetrain.neighbours import keep

    def make(lib: Library):
        with keep(into=indexes):
            return lib.namer()

    return make


def _recognise(app: FastAPI, act, db_path) -> None:
    """Who is this? A photo from the owner's computer, its faces named from the library's
    named people (`Library.identify`, the rule `library identify` uses). The photo is kept
    only while it is analysed, in a private temporary folder, and never added."""
    namers = KeptWhileUnchanged(db_path, _namer_keeping({}))

    @app.post("/api/identify")
    async def api_identify(request: Request) -> dict:
        data = await _upload(request, MAX_PHOTO)
        with tempfile.TemporaryDirectory(prefix="facetrain-identify-") as tmp:
            path = os.path.join(tmp, "photo" + _kind(request.headers.get("x-photo-kind", "")))
            with open(path, "wb") as f:
                f.write(data)
            r = await run_in_threadpool(act, "identify", [path], None, MARGIN, "cpu", None,
                                        False, 1, namers.get)  # fmt: skip
        if "error" in r[0]:
            raise HTTPException(400, f"no faces read: {r[0]['error'].replace(path, 'the photo')}")
        return {k: r[0].get(k) for k in ("faces", "size", "rule")}


async def _upload(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes, as declared or as it comes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"a photo of at most {limit // 2**20} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"a photo of at most {limit // 2**20} MB")
        chunks.append(chunk)
    if not size:
        raise HTTPException(400, "no photo was sent")
    return b"".join(chunks)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facetrain library</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;
  display:flex;gap:1em;align-items:center;padding:.6em 1em;flex-wrap:wrap}
header h1{font-size:1.1em;margin:0}#status{color:#555;flex:1;min-width:12em}
main{padding:1em}.hidden{display:none!important}
@media (max-width:600px){header{position:static}}  /* a third of a narrow screen */
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:14px}
.card{background:#fff;border-radius:10px;padding:8px;text-align:center;cursor:pointer;
  border:2px solid transparent;color:inherit;text-decoration:none}
.card:focus,.card:hover{border-color:#4a7}
.card img{width:134px;height:134px;object-fit:cover;border-radius:50%}
.card .who{font-weight:600;margin-top:4px}.card .n{color:#595959;font-size:.85em}
.card.is-hidden{background:#ececea}.card.is-hidden img{opacity:.5}
#person h2{margin:.2em 0}.row{display:flex;gap:.5em;align-items:center;flex-wrap:wrap;margin:.5em 0}
#with .with.on,#years .year.on{background:#dbe9ff}
.photos{display:flex;flex-wrap:wrap;gap:6px}
.photos img{height:180px;border-radius:6px;cursor:zoom-in;display:block}
.photos button,.facepick{padding:0;border:0;background:none;cursor:pointer}
.photos button:focus-visible,.facepick:focus-visible,.card:focus-visible{outline:3px solid #1a5fb4;
  outline-offset:2px}
.faces{display:flex;flex-wrap:wrap;gap:8px}
.face{background:#fff;border-radius:8px;padding:4px;text-align:center}
.face img{width:96px;height:96px;object-fit:cover;border-radius:6px;display:block}
#personal{background:#eef6f0;padding:.5em 1em;border-bottom:1px solid #cdc}
#personal td,#personal th{padding:0 .8em;text-align:left}
.face button{font-size:11px}.face.confirmed img{outline:3px solid #2a7a4a}
.face .badge{font-size:11px;color:#595959}.face.picked{background:#dbe9ff}
.face.confirmed .badge{color:#2a7a4a;font-weight:600}
#suggest{display:flex;flex-wrap:wrap;gap:8px}.sugg{background:#fff;border-radius:8px;
  padding:4px 8px;display:flex;gap:6px;align-items:center}
.sugg img{width:48px;height:48px;object-fit:cover;border-radius:50%}
input,button{font:inherit}input[type=search],input.pick{padding:.25em .4em}
#whobox{position:relative;display:inline-block}
#whoimg{display:block;max-width:100%;max-height:70vh;min-height:min(360px,70vh)}
.wbox{position:absolute;border:3px solid #2a7a4a;box-sizing:border-box}
.wbox.unknown{border-color:#c84;border-style:dashed}.wbox span{position:absolute;bottom:0;
  left:0;background:#2a7a4a;color:#fff;font-size:12px;padding:0 4px;white-space:nowrap}
.wbox.unknown span{background:#9a5418}
</style></head><body>
<header><h1>facetrain library</h1>
<input id="search" type="search" placeholder="search people ( / )" aria-label="search people">
<label><input type="checkbox" id="small"> small stacks (under 3 faces)</label>
<label><input type="checkbox" id="showhidden"> hidden</label>
<button id="learn" title="a private adapter learnt from the faces you named, measured first"
>Learn from my names</button><button id="plain" class="hidden">Back to the plain model</button>
<button id="who" title="name the faces of a photo from your computer (or drop one on the
page); it is not added"
>Who is this?</button><input id="whofile" type="file" accept="image/*" class="hidden">
<button id="look" title="scan again the folders this library was made from: the faces of
new photos join their people (your photos are only read)">Look for new photos</button>
<button id="lookstop" class="hidden" title="what was found so far is kept"
>Stop looking</button><button id="undo" title="Ctrl+Z">Undo</button>
<span id="status" role="status">ready</span></header>
<section id="personal" class="hidden" aria-label="your personal model"></section>
<main>
<section id="people"><div id="grid"></div></section>
<section id="person" class="hidden">
  <div class="row"><button id="back" title="Esc">&larr; People</button>
    <h2 id="title"></h2><span id="counts" class="n"></span></div>
  <div class="row"><input id="name" placeholder="name (Enter to save)" aria-label="name">
    <button id="save">Name</button>
    <input id="mergepick" class="pick" list="peoplelist" placeholder="merge into… (type a name)"
      aria-label="merge into"><button id="merge">Merge</button>
    <button id="split">Split</button><button id="hide">Hide</button>
    <button id="unhide">Unhide</button></div>
  <h3>Same person?</h3><div id="suggest"></div>
  <h3 id="photostitle">Photos</h3><div id="with" class="row"></div>
  <div id="years" class="row"></div>
  <div id="photos" class="photos"></div>
  <h3>Faces</h3>
  <div class="row"><span id="picked">click faces to select several</span>
    <input id="movepick" class="pick" list="peoplelist" placeholder="move selected to…"
      aria-label="move the selected faces to"><button id="movesel">Move selected</button></div>
  <div id="faces" class="faces"></div>
</section>
<section id="whosec" class="hidden">
  <div class="row"><button id="whoback" title="Esc">&larr; People</button>
    <h2 id="whotitle">Who is this?</h2><span id="whonote" class="n"></span>
    <button id="prevphoto" class="hidden" title="the later photo (&larr;)">&lsaquo;</button>
    <button id="nextphoto" class="hidden" title="the earlier photo (&rarr;)">&rsaquo;</button>
  </div>
  <div id="whobox"><img id="whoimg" alt="the photo to recognise"></div>
  <ul id="wholist"></ul>
</section>
<datalist id="peoplelist"></datalist>
</main>
<script>
const $ = (s, e = document) => e.querySelector(s);
const esc = s => String(s).replace(/[&<>"']/g,
  c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const label = p => p.name || `Unnamed #${p.id}`;
const many = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;  // 1 face, 2 faces
let people = [], current = null, photoShown = null;  // the person or photo in view
let photoList = [], photoFrom = null;  // the person's photos last listed, and that person
async function call(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify(body || {})});
  const j = await r.json();
  await refresh();  // redraw first, so the status line never announces a change not yet shown
  $("#status").textContent = r.ok ? j.message : ("error: " + j.detail);
  return r.ok;
}
function pick(text) {  // a person from the picker's text: "Name", "Unnamed #12" or "12"
  const t = text.trim(), low = t.toLowerCase();
  const exact = people.find(p => label(p) === t || String(p.id) === t.replace("#", ""));
  if (exact) return exact;
  const like = people.filter(p => label(p).toLowerCase() === low);
  if (like.length > 1) {  // "amy" with both Amy and amy here: ask, never guess
    $("#status").textContent = `several people match "${t}": ` +
      like.map(label).join(", ") + " — type the name exactly";
    return "ask";
  }
  return like[0];
}
function drawGrid() {
  const q = $("#search").value.trim().toLowerCase();
  const shown = people.filter(p => (p.faces >= 3 || $("#small").checked)
    && (!p.hidden || $("#showhidden").checked) && label(p).toLowerCase().includes(q));
  $("#grid").innerHTML = shown.map(p => `<a class="card${p.hidden ? " is-hidden" : ""}"
    href="/person/${p.id}" data-stack="${p.id}"><img alt="" src="/face/${p.cover ??
    p.face_ids[0]}.jpg"><div class="who">${esc(label(p))}</div>
    <div class="n">${p.hidden ? "hidden · " : ""}${many(p.faces, "face")} · ${many(p.photos,
    "photo")}</div></a>`).join("")
    || (people.length ? "<p>No stacks to show (small and hidden ones are behind the " +
        "switches).</p>" : "<p>No stacks yet: <b>Look for new photos</b> finds the faces " +
        "of the folders you scanned and stacks them per person.</p>");
  document.querySelectorAll(".card").forEach(c => c.onclick = e => {
    if (e.ctrlKey || e.metaKey || e.shiftKey) return;  // a new tab or window: the link's own
    e.preventDefault(); openPerson(Number(c.dataset.stack));
  });
  $("#peoplelist").innerHTML = people.filter(p => !p.hidden)
    .map(p => `<option value="${esc(label(p))}">`).join("");
}
async function drawPerson() {
  const r = await fetch(`/api/stacks/${current}`);
  if (!r.ok) { return showPeople(); }
  const s = await r.json();
  $("#title").textContent = label(s);
  $("#counts").textContent = `${many(s.faces, "face")} · ${many(s.photos, "photo")}`;
  $("#name").value = s.name || "";
  $("#hide").classList.toggle("hidden", !!s.hidden);
  $("#unhide").classList.toggle("hidden", !s.hidden);
  drawPhotos(s);
  drawWith(s.with);
  const sure = new Set(s.confirmed_ids);
  picked.clear(); drawPicked();
  $("#faces").innerHTML = s.face_ids.map(f => `<div class="face${sure.has(f) ? " confirmed" : ""}"
    data-face="${f}"><button class="facepick" aria-pressed="false" title="select (Space)"
    ><img alt="face ${f}" src="/face/${f}.jpg"></button>
    <span class="badge">${sure.has(f) ? "&#10003; confirmed" : "guess"}</span><br>
    <button class="reject" title="not this person">not them</button><br>
    <input class="pick move" list="peoplelist" size="9"
    placeholder="move to…" aria-label="move face ${f} to"></div>`).join("");
  drawSuggestions();
  document.querySelectorAll(".face").forEach(d => {
    const face = Number(d.dataset.face);
    $(".facepick", d).onclick = e => {
      if (!picked.delete(face)) picked.add(face);
      d.classList.toggle("picked", picked.has(face)); drawPicked();
      e.currentTarget.setAttribute("aria-pressed", picked.has(face));
    };
    $(".reject", d).onclick = () => call(`/api/faces/${face}/reject`);
    $(".move", d).onkeydown = e => { if (e.key === "Enter") moveFace(face, e.target.value); };
  });
}
function drawPhotos(p, title) {  // the latest first; a photo's date in its tooltip
  $("#photostitle").textContent = `${title || "Photos"} (${p.photo_ids.length})`;
  drawYears(p);
  drawPhotoGrid(p.photo_ids, p.photo_dates);
}
function drawPhotoGrid(ids, dates) {  // these photos; ‹ › on a photo go through them
  $("#photos").innerHTML = ids.map((id, k) => `<button><img loading="lazy" data-photo="${id}"
    alt="photo ${id}, ${esc(dates[k] || "no date")}" src="/photo/${id}.jpg"
    title="${esc(dates[k] || "no date")}"></button>`).join("");
  photoList = ids; photoFrom = current;
  document.querySelectorAll("#photos button").forEach(b =>
    b.onclick = () => openPhoto(Number(b.firstChild.dataset.photo)));
}
function drawYears(p) {  // the years the photos were taken in: click one to see it only
  const year = d => d ? d.slice(0, 4) : "no date", counts = new Map();
  p.photo_dates.forEach(d => counts.set(year(d), (counts.get(year(d)) || 0) + 1));
  const chip = (y, text) => `<button class="year" data-year="${esc(y)}">${esc(text)}</button>`;
  $("#years").innerHTML = counts.size < 2 ? "" : "taken:" + chip("", "every year") +
    [...counts].map(([y, n]) => chip(y, `${y} · ${n}`)).join("");
  document.querySelectorAll("#years .year").forEach(b => b.onclick = () => {
    const keep = p.photo_dates.map((d, k) => k)
      .filter(k => !b.dataset.year || year(p.photo_dates[k]) === b.dataset.year);
    drawPhotoGrid(keep.map(k => p.photo_ids[k]), keep.map(k => p.photo_dates[k]));
    document.querySelectorAll("#years .year").forEach(c => c.classList.toggle("on", c === b));
  });
}
function drawWith(others) {  // the people on this one's photos: click to see those only
  const chip = (id, text, tip) =>
    `<button class="with" data-id="${id}" title="${esc(tip)}">${esc(text)}</button>`;
  const all = chip("", "all photos", "every photo of this person");
  $("#with").innerHTML = others.length ? "with:" + all +
    others.map(o => chip(o.id, `${label(o)} · ${o.photos}`,
                         `only the photos ${label(o)} is on too`)).join("") : "";
  document.querySelectorAll("#with .with").forEach(b => b.onclick = async () => {
    const id = b.dataset.id, who = others.find(o => String(o.id) === id);
    const r = await fetch(`/api/stacks/${current}/photos` + (id ? `?with=${id}` : ""));
    if (!r.ok) return;
    drawPhotos(await r.json(), who ? `Photos with ${label(who)}` : "Photos");
    document.querySelectorAll("#with .with").forEach(c => c.classList.toggle("on", c === b));
  });
}
async function moveFace(face, text) {  // "move to…": this face is that person (confirmed);
  const to = pick(text);                 // a name no one has makes that person
  if (to === "ask" || !text.trim()) return;
  await call(`/api/faces/${face}/move`, to ? {to: to.id} : {name: text});
}
const picked = new Set();
function drawPicked() {
  $("#picked").textContent = picked.size ? `${many(picked.size, "face")} selected`
                                         : "click faces to select several";
}
async function moveSelected() {
  const to = pick($("#movepick").value);
  if (to === "ask") return;
  if (!to) { $("#status").textContent = `no person "${$("#movepick").value}"`; return; }
  if (!picked.size) { $("#status").textContent = "no faces selected"; return; }
  if (await call("/api/faces/move", {faces: [...picked], to: to.id})) $("#movepick").value = "";
}
$("#movesel").onclick = moveSelected;
$("#movepick").onkeydown = e => { if (e.key === "Enter") moveSelected(); };
async function drawSuggestions() {  // "same person?": nearest stacks first, one click to merge
  const shown = current;
  const r = await fetch(`/api/stacks/${shown}/suggestions`);
  if (!r.ok || shown !== current) return;
  const list = await r.json();
  $("#suggest").innerHTML = list.map(p => {
    const cover = (people.find(q => q.id === p.id) || {}).cover;
    const img = cover ? `<img alt="" src="/face/${cover}.jpg">` : "";
    return `<div class="sugg" data-stack="${p.id}">${img}
      <a href="/person/${p.id}">${esc(label(p))}</a> <span class="n">${many(p.faces, "face")},
      distance ${p.distance.toFixed(3)}</span><button class="mergethis">Merge here</button></div>`;
  }).join("") || "<span class='n'>no other stack to suggest</span>";
  document.querySelectorAll(".sugg").forEach(d => {
    $("a", d).onclick = e => { e.preventDefault(); openPerson(Number(d.dataset.stack)); };
    $(".mergethis", d).onclick = () =>
      call(`/api/stacks/${current}/merge`, {other: Number(d.dataset.stack)});
  });
}
const pct = v => v === null ? "n/a" : (100 * v).toFixed(1) + "%";
function drawPersonal(p) {  // the adapter in use and what it was measured to do
  $("#plain").classList.toggle("hidden", !p);
  $("#personal").classList.toggle("hidden", !p);
  if (!p) return;
  const row = (what, k) => `<tr><td>${what}</td><td>${pct(p[k + "_before"])}</td>
    <td>${pct(p[k + "_after"])}</td></tr>`;
  $("#personal").innerHTML = `<b>Personal model on</b> (since ${esc(p.since)}): measured on
    ${p.held_back_faces} faces held back from it — ${esc(p.verdict)}<table><tr><th>measured</th>
    <th>plain model</th><th>personal</th></tr>${row("stacks right (BCubed F)", "bcubed_f")}
    ${row("your people named right", "identify_accuracy")}
    ${row("strangers given a name", "stranger_false_name_rate")}</table>`;
}
async function refresh() {  // both lists at once, then drawn with no wait between
  const [list, personal] = await Promise.all([
    fetch("/api/people").then(r => r.json()), fetch("/api/personal").then(r => r.json())]);
  people = list;
  drawPersonal(personal.personal);
  drawGrid();
  if (current !== null) await drawPerson();
  else if (photoShown !== null) await openPhoto(photoShown, false);
}
async function openPerson(id, push = true) {  // each person has a URL: /person/ID
  current = id; photoShown = null;
  if (push && location.pathname !== `/person/${id}`) history.pushState(null, "", `/person/${id}`);
  $("#people").classList.add("hidden"); $("#whosec").classList.add("hidden");
  $("#person").classList.remove("hidden");
  const was = document.activeElement;
  await drawPerson();
  window.scrollTo(0, 0);  // the title row in view, below the sticky header
  // the name field, unless the owner started typing elsewhere while the page was drawn
  if (document.activeElement === was || document.activeElement === document.body) {
    $("#name").focus();
  }
}
async function whoIsThis(file) {  // the photo's faces named; it stays on this computer
  $("#status").textContent = `looking for faces in ${file.name}…`;
  const dot = file.name.lastIndexOf("."), kind = dot > 0 ? file.name.slice(dot) : "";
  const r = await fetch("/api/identify", {method: "POST", body: file, headers: {
    "Content-Type": "application/octet-stream", "X-Photo-Kind": encodeURIComponent(kind)}});
  const j = await r.json();
  if (!r.ok) { $("#status").textContent = `${file.name}: ${j.detail}`; return; }
  const f = j.faces, named = f.filter(x => x.name !== "unknown").length;
  showPhoto("Who is this?", URL.createObjectURL(file), j.size, f.map(x => {
    const p = people.find(q => q.name === x.name);
    return {box: x.box, text: x.name, unknown: x.name === "unknown", stack: p && p.id};
  }), file.name);
  $("#status").textContent = `${file.name}: ${f.length} face${f.length === 1 ? "" : "s"}, ` +
    `${named} named`;
  $("#whonote").textContent = f.length ? "" : "no face found in this photo";
}
// a photo with its faces boxed and labelled, a link to each one's person below it
function showPhoto(title, src, [w, h], faces, alt = title) {
  current = photoShown = null;
  ["#prevphoto", "#nextphoto"].forEach(b => $(b).classList.add("hidden"));
  $("#whoback").innerHTML = "&larr; People";
  $("#people").classList.add("hidden"); $("#person").classList.add("hidden");
  $("#whosec").classList.remove("hidden");
  $("#whotitle").textContent = title;
  if ($("#whoimg").src.startsWith("blob:")) URL.revokeObjectURL($("#whoimg").src);
  $("#whobox").classList.remove("hidden");
  $("#whoimg").onerror = () => {  // HEIC, say: read here, not shown by every browser
    $("#whobox").classList.add("hidden");
    $("#whonote").textContent = "this browser cannot show this photo; its faces are below";
  };
  $("#whoimg").src = src; $("#whoimg").alt = alt;
  $("#whobox").querySelectorAll(".wbox").forEach(b => b.remove());
  faces.forEach(x => {
    const cut = (v, most) => Math.min(Math.max(v, 0), most);  // a box run off the photo
    const [x1, y1, x2, y2] = [cut(x.box[0], w), cut(x.box[1], h), cut(x.box[2], w),
                              cut(x.box[3], h)];
    const b = document.createElement("div");
    b.className = "wbox" + (x.unknown ? " unknown" : "");
    b.style.cssText = `left:${100 * x1 / w}%;top:${100 * y1 / h}%;` +
      `width:${100 * (x2 - x1) / w}%;height:${100 * (y2 - y1) / h}%`;
    b.innerHTML = `<span>${esc(x.text)}</span>`;
    $("#whobox").appendChild(b);
  });
  $("#wholist").innerHTML = faces.map(x => `<li data-face="${x.face ?? ""}">${x.stack ?
    `<a href="/person/${x.stack}" data-stack="${x.stack}">${esc(x.text)}</a>` : esc(x.text)}
    ${x.face == null ? "" : (x.stack ? `<button class="reject" title="not this person">not them
    </button>` : "") + `<input class="pick move" list="peoplelist" size="14"
    placeholder="move to…" aria-label="move this face to">`}</li>`).join("");
  document.querySelectorAll("#wholist a").forEach(a => a.onclick = e => {
    e.preventDefault(); openPerson(Number(a.dataset.stack));
  });
  document.querySelectorAll("#wholist li[data-face]:not([data-face=''])").forEach(li => {
    const face = Number(li.dataset.face), reject = $(".reject", li);
    if (reject) reject.onclick = () => call(`/api/faces/${face}/reject`);
    $(".move", li).onkeydown = e => { if (e.key === "Enter") moveFace(face, e.target.value); };
  });
}
async function openPhoto(id, push = true) {  // a photo of the library: /photos/ID
  const r = await fetch(`/api/photos/${id}`);
  if (!r.ok) { $("#status").textContent = "error: " + (await r.json()).detail; return; }
  const j = await r.json();
  if (push && location.pathname !== `/photos/${id}`) history.pushState(null, "", `/photos/${id}`);
  showPhoto(j.name, `/photo/${id}.jpg?size=1600`, j.size, j.faces.map(x => {
    const s = x.stack, who = s ? (s.hidden ? "hidden" : label(s))
                               : (x.usable ? "in no stack" : "too small or blurred");
    return {box: x.box, text: who + (s && !x.confirmed ? " (guess)" : ""), face: x.id,
            unknown: !s || s.hidden, stack: s && !s.hidden ? s.id : null};
  }));
  photoShown = id;
  const k = photoList.indexOf(id);  // a photo of the list the person's page showed: ‹ ›
  [["#prevphoto", k > 0 ? photoList[k - 1] : null],
   ["#nextphoto", k >= 0 && k < photoList.length - 1 ? photoList[k + 1] : null]]
    .forEach(([b, to]) => { $(b).classList.toggle("hidden", to === null); $(b).dataset.to = to; });
  $("#whoback").innerHTML = photoFrom === null ? "&larr; People" : `&larr; ${esc(
    label(people.find(q => q.id === photoFrom) || {id: photoFrom}))}`;
  $("#whonote").textContent = (j.date || "no date") + ` · ${j.faces.length} face` +
    (j.faces.length === 1 ? "" : "s");
  const f = document.activeElement;  // the photo opened from the keyboard, or ‹ › gone
  if (!$("#whosec").contains(f) || f.offsetParent === null) $("#whoback").focus();
}
$("#who").onclick = () => $("#whofile").click();
$("#whofile").onchange = e => {
  const file = e.target.files[0];
  e.target.value = "";
  if (file) whoIsThis(file);
};
$("#whoback").onclick = () => leavePhoto();
async function leavePhoto() {  // back to the person whose photo it was, else to the people
  const shown = photoShown;
  if (shown === null || photoFrom === null) return showPeople();
  await openPerson(photoFrom);
  const img = $(`#photos img[data-photo="${shown}"]`);  // the keyboard back where it was
  if (img) img.parentElement.focus();
}
["#prevphoto", "#nextphoto"].forEach(b => $(b).onclick = () => openPhoto(Number($(b).dataset.to)));
document.addEventListener("dragover", e => e.preventDefault());  // a photo dropped anywhere
document.addEventListener("drop", e => {
  e.preventDefault();
  const file = [...e.dataTransfer.files].find(f => f.type.startsWith("image/"))
    || e.dataTransfer.files[0];
  if (file) whoIsThis(file);
});
function showPeople(push = true) {
  const from = current;
  current = photoShown = photoFrom = null; photoList = [];
  if (push && location.pathname !== "/") history.pushState(null, "", "/");
  $("#whosec").classList.add("hidden");
  $("#person").classList.add("hidden");
  $("#people").classList.remove("hidden");
  drawGrid();
  const card = from !== null && $(`.card[data-stack="${from}"]`);  // the person just left
  if (card) card.focus();
}
function route() {  // the page for the address: the back button and shared links work
  const m = location.pathname.match(/^[/]person[/]([0-9]+)$/);
  const ph = location.pathname.match(/^[/]photos[/]([0-9]+)$/);
  if (m) openPerson(Number(m[1]), false);
  else if (ph) openPhoto(Number(ph[1]), false);
  else showPeople(false);
}
window.onpopstate = route;
const saveName = () => call(`/api/stacks/${current}/name`, {name: $("#name").value});
$("#save").onclick = saveName;
$("#name").onkeydown = e => { if (e.key === "Enter") saveName(); };
async function mergeInto() {
  const into = pick($("#mergepick").value);
  if (into === "ask") return;
  if (!into) { $("#status").textContent = `no person "${$("#mergepick").value}"`; return; }
  const from = current;
  current = into.id;  // call's redraw shows the merged person before the status says "merged"
  if (await call(`/api/stacks/${into.id}/merge`, {other: from})) {
    $("#mergepick").value = ""; history.replaceState(null, "", `/person/${into.id}`);
  }
  else { current = from; await drawPerson(); }
}
$("#merge").onclick = mergeInto;
$("#mergepick").onkeydown = e => { if (e.key === "Enter") mergeInto(); };
$("#split").onclick = () => call(`/api/stacks/${current}/split`);
$("#hide").onclick = () => call(`/api/stacks/${current}/hide`);
$("#unhide").onclick = () => call(`/api/stacks/${current}/unhide`);
$("#back").onclick = showPeople;
$("#undo").onclick = () => call("/api/undo");
$("#learn").onclick = () => { $("#status").textContent = "learning from your names…";
                              call("/api/personalize"); };
$("#plain").onclick = () => call("/api/personalize/off");
const clock = s => s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
function lookingIn(j) {  // the button says where it looks
  if (!j.folders) return;  // the library could not be read just now: the title stays
  $("#look").title = j.folders.length ? "scan again " + j.folders.join(", ") + ": the faces " +
    "of new photos join their people (your photos are only read)" :
    "no folder yet: scan one with facetrain library scan FOLDER";
}
async function follow() {  // a look for new photos: how far it is, until it ends
  const j = await (await fetch("/api/scan")).json();
  $("#look").disabled = j.running;
  $("#lookstop").classList.toggle("hidden", !j.running || !!j.stopping);
  if (!j.running) {
    lookingIn(j);
    if (j.message || j.error) {
      await refresh();
      $("#status").textContent = j.error ? "error: " + j.error : j.message;
    }
    return;
  }
  const where = j.folder_count > 1 ? ` (folder ${j.folder_number} of ${j.folder_count})` : "";
  $("#status").textContent = (j.stopping ? "stopping: " : "") +
    (j.folder ? `looking for new photos in ${j.folder}${where}` : "looking for new photos…") +
    (j.total ? `: ${j.done} of ${j.total} photos` : "") +
    (j.eta_s !== undefined ? `, about ${clock(j.eta_s)} left` : "");
  setTimeout(follow, 1000);
}
$("#look").onclick = async () => {
  const r = await fetch("/api/scan", {method: "POST"});
  if (!r.ok) { $("#status").textContent = "error: " + (await r.json()).detail; return; }
  follow();
};
$("#lookstop").onclick = async () => { await fetch("/api/scan/stop", {method: "POST"}); };
["#search", "#small", "#showhidden"].forEach(s => $(s).oninput = drawGrid);
document.addEventListener("keydown", e => {
  if (e.key === "Escape" && photoShown !== null) leavePhoto();
  else if (e.key === "Escape" && (current !== null || !$("#whosec").classList.contains("hidden"))) {
    showPeople();
  }
  else if (photoShown !== null && document.activeElement.tagName !== "INPUT" &&
           (e.key === "ArrowLeft" || e.key === "ArrowRight")) {
    const b = $(e.key === "ArrowLeft" ? "#prevphoto" : "#nextphoto");
    if (!b.classList.contains("hidden")) b.click();
  }
  else if (e.key === "/" && document.activeElement.tagName !== "INPUT") {
    e.preventDefault(); $("#search").focus();
  } else if (e.key === "z" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); call("/api/undo"); }
});
refresh().then(route);
fetch("/api/scan").then(r => r.json()).then(j => { if (j.running) follow(); else lookingIn(j); });
</script></body></html>
"""


def _csp(page: str) -> str:
    """A strict Content-Security-Policy for PAGE: its one inline script by hash, nothing
    from elsewhere, no frame around it (`frame-ancestors 'none'`)."""
    import base64
    import hashlib
    import re

    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
            "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")  # fmt: skip


CSP = _csp(PAGE)
