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
from importlib import resources
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
from facetrain.progress import counted

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
                done = list(lib.scan_again(lib.model(), workers=0,  # as `library scan`
                                           on_folder=self._folder, on_progress=self._progress,
                                           stop=self.stopping.is_set))  # fmt: skip
                never = any(not isinstance(r, str) and r.to_stack for _, r in done)
                first = lib.cluster()[0] if never else None  # a library never stacked: now
            said = looked(done)
            if first is not None:
                said += (
                    f"; {counted(first.faces, 'face')} stacked per person: "
                    f"{counted(first.stacks, 'stack')}"
                )
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
    words = [("new", "new photo", None), ("duplicates", "copy of a photo it holds",
             "copies of photos it holds"), ("changed", "changed", "changed"),
             ("moved", "moved", "moved"), ("removed", "gone", "gone"),
             ("missing", "gone but kept for the names on it", "gone but kept for the names "
              "on them")]  # fmt: skip
    said = ", ".join(counted(n[k], one, many) for k, one, many in words if n[k])
    line = f"looked in {counted(len(reps), 'folder')}: {said or 'no new photos'}"
    if n["usable_faces"]:
        line += (f"; {counted(n['usable_faces'], 'face')} found: {n['joined_stacks']} joined "
                 f"their people, {counted(n['new_stacks'], 'new stack')}")  # fmt: skip
    notes = sum(not why.startswith("duplicate of") for r in reps for why in r.problems.values())
    if notes:
        line += (f"; {counted(notes, 'file')} to look at (`facetrain library scan` lists them "
                 "and why)")  # fmt: skip
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
    def api_personalize(anyway: bool = False) -> dict:
        r = act("personalize", None, anyway)
        on = "switched on" if r["personalized"] else "kept off: the library decides as before"
        if r.get("kept_one_switched_on"):
            on += ", as measured just now (nothing learnt again)"
        return {"message": f"learnt from {r['named_faces']} named faces: {r['verdict']}; {on}"}

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


# the whole page (markup, style and its one script) is a file beside this one, so that it is
# edited and checked as HTML; it is read once, and its script's hash goes into CSP below
PAGE = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


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
