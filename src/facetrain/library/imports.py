"""Names other programs kept, brought into a library: the face regions of XMP (digiKam,
Lightroom, Immich, Windows Photo Gallery), Picasa's `.picasa.ini` tags, and the people
Google Takeout's JSON (or XMP's `PersonInImage`) lists on a photo with no place.

A name with a place goes to the face found there (`curate.name_regions`); names with no
place name the one face of a photo of one person, the faces of other photos by likeness
among the people each lists (`by_likeness`), and someone never alone on a photo by the
stack the photos listing them share (`by_company`). The owner's word always stands.
Each function takes the `Library` (its connection and its naming rule) and returns counts
for the command line to say.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from facetrain.library import curate, store
from facetrain.library import picasa as picasa_ini
from facetrain.library import takeout as takeout_json
from facetrain.library.cluster import shared_face
from facetrain.library.names import clean_name
from facetrain.library.store import LibraryError
from facetrain.library.turns import region
from facetrain.neighbours import keep
from facetrain.open_set import UNKNOWN

ROUNDS = 3  # of naming by likeness; each adds the faces the last named (takeout_groups.py)
# the most people one photo's list may name: a longer list is no photo's (a crafted file
# listing thousands would cost a query each, on every photo, in every round)
MAX_LISTED = 200


def xmp(lib, root: str | os.PathLike) -> dict:
    """Names from the face regions (MWG's, as digiKam, Lightroom and Immich write them,
    or Windows Photo Gallery's) of the XMP beside the photos below root — a sidecar —
    or, where there is none, inside them, given to the faces found there; the owner's
    own confirmed faces are kept. XMP that lists people with no regions is read as
    Google Photos' lists are (`name_listed`). XMP that cannot be read is listed."""
    from facetrain.data.images import exif_orientation
    from facetrain.library.turns import upright_area

    out = {"sidecars": 0, "embedded": 0, "faces_named": 0, "regions_without_face": 0,
           "names_refused": 0, "problems": {}}  # fmt: skip
    listed = []
    photos = sorted(store.photos_under(lib.con, os.path.abspath(root)).items())
    for path, row in _shown(photos, "names from XMP"):
        if row["status"] != "ok" or not row["width"]:
            continue
        source, regions, people = _xmp_names(path, out["problems"])
        out[source] += bool(regions or people)
        if not regions:
            listed += [(row, people)] if people else []
            continue
        turn = exif_orientation(path)
        regions = [(name, upright_area(area, turn)) for name, area in regions]
        for k, v in curate.name_regions(lib.con, row, regions).items():
            out[k] += v
    got = name_listed(lib, listed, "XMP's people", out["problems"])
    return out | {k: out.get(k, 0) + v for k, v in got.items()}


def picasa(lib, root: str | os.PathLike, contacts_xml: str | None = None) -> dict:
    """Names from Picasa's face tags (the `.picasa.ini` of each folder below root, its
    names, or `contacts_xml`'s — Picasa's own list) given to the faces found there; the
    owner's own confirmed faces are kept. A photo whose tags fit its faces more than
    one way up, differently, is listed and left; files that cannot be read are listed."""
    from facetrain.data.images import exif_orientation

    out = {"folders": 0, "photos": 0, "faces_named": 0, "unnamed": 0,
           "regions_without_face": 0, "names_refused": 0, "unclear": [],
           "problems": {}}  # fmt: skip
    names = _picasa_contacts(contacts_xml)
    folders = _by_folder(store.photos_under(lib.con, os.path.abspath(root)))
    for folder, rows in _shown(folders, "Picasa's tags"):
        tags = _picasa_tags(folder, names, out["problems"])
        out["folders"] += tags is not None
        for path, row in rows if tags else []:
            tag = tags.get(os.path.basename(path).casefold())
            if tag is None or row["status"] != "ok" or not row["width"]:
                continue
            out["photos"] += 1
            out["unnamed"] += tag["unnamed"]
            turns = picasa_ini.frames(exif_orientation(path), tag["rotate"])
            faces = store.faces_of_photo(lib.con, row["id"])
            regions = curate.turned_to_fit(faces, row, tag["regions"], turns)
            if regions is None:
                out["unclear"].append(path)
                continue
            for k, v in curate.name_regions(lib.con, row, regions, "Picasa's tags").items():
                out[k] += v
    return out


def takeout(lib, root: str | os.PathLike) -> dict:
    """Names from Google Photos: the people Google Takeout's JSON lists on each photo
    below root, with no place for their faces. A photo of one person with one face, one
    the library can use, has that face named (the owner's confirmed faces kept); the
    faces of the others as `name_listed` names them. JSON that cannot be read is listed."""
    problems: dict[str, str] = {}
    listed = []
    folders = _by_folder(store.photos_under(lib.con, os.path.abspath(root)))
    for folder, rows in _shown(folders, "Google Photos' lists"):
        ok = {os.path.basename(p): r for p, r in rows if r["status"] == "ok" and r["width"]}
        names = takeout_json.names_in(folder, list(ok), problems)
        listed += [(ok[photo], people) for photo, people in names.items()]
    out = name_listed(lib, listed, "Google Photos' people", problems)
    return {"photos": len(listed)} | out | {"problems": problems}


def name_listed(lib, listed: list, source: str, problems: dict) -> dict[str, int]:
    """Names another program lists on photos ((photo, names)) with no place for their
    faces: a photo of one person with one face, one the library can use, has that face
    named (the owner's confirmed faces kept); the faces of the others are named by
    likeness among the people they list (`by_likeness`), and people never alone by the
    photos they share (`by_company`). `source` is what the undo log says they came from."""
    out = {"faces_named": 0, "regions_without_face": 0, "names_refused": 0}
    several = []
    for photo, names in listed:
        if len(names) > MAX_LISTED:
            problems[photo["path"]] = f"lists {len(names)} people, more than {MAX_LISTED}"
            continue
        face = _only_face(store.faces_of_photo(lib.con, photo["id"]))
        if len(names) != 1 or face is None:
            several.append((photo, names))
            continue
        tag = [(names[0], _area(face, photo))]
        for k, v in curate.name_regions(lib.con, photo, tag, source).items():
            out[k] += v
    with keep():  # each round's namer searches one index of the library's faces
        liked = by_likeness(lib, several, problems, source) if several else 0
        shared = by_company(lib, several, problems, source) if several else 0
        if shared:  # the people so found are prototypes now: their other faces by likeness
            liked += by_likeness(lib, several, problems, source)
    out["faces_named"] += liked + shared
    return out | {"listed": len(listed), "several": len(several), "by_likeness": liked,
                  "by_company": shared}  # fmt: skip


def by_likeness(lib, photos: list, problems: dict, source: str, rounds: int = ROUNDS) -> int:
    """`named_among` for each (photo, names), in rounds: the faces one round names are
    the next round's prototypes too, until a round names none; the faces named."""
    done = 0
    for k in range(rounds):
        namer = _namer(lib, problems)
        if namer is None:
            return done
        named = sum(named_among(lib, namer, p, names, source)["faces_named"]
                    for p, names in _shown(photos, f"by likeness, round {k + 1}"))  # fmt: skip
        done += named
        if not named:
            break
    return done


def by_company(lib, photos: list, problems: dict, source: str, least: int = 3) -> int:
    """The people listed ((photo, names)) whom likeness cannot find — no face of theirs
    is confirmed: never alone on a photo — each named on the faces the photos that list
    them share (`cluster.shared_face`), when `least` photos or more list them and that
    face is not as often on the listed photos that do not name them; a face two such
    people would both take is left. The faces named."""
    namer = _namer(lib, problems)
    if namer is None:
        return 0
    wanted: dict[str, set] = {}
    for photo, names in photos:
        for name in {clean_name(n) for n in names}:
            wanted.setdefault(name, set()).add(photo["id"])
    wanted = {n: its for n, its in wanted.items()
              if store.person_named(lib.con, n) not in namer.people}  # fmt: skip
    if not any(len(its) >= least for its in wanted.values()):
        return 0
    pool = _unnamed_faces(lib, namer, [p for p, _ in photos])
    # people listed on exactly the same photos cannot be told apart by them
    alike = Counter(frozenset(its) for its in wanted.values())
    people = _shown(sorted(wanted.items()), "by the photos they share")
    shared = {name: _shared(namer, pool, its, least)
              if len(its) >= least and alike[frozenset(its)] == 1 else []
              for name, its in people}  # fmt: skip
    done, source = 0, f"{source}, by the photos they share"
    for name, p, f in _agreeing(shared, namer.distance):
        done += curate.name_regions(lib.con, p, [(name, _area(f, p))], source)["faces_named"]
    return done


def _namer(lib, problems: dict):
    """The library's naming rule (`Library.namer`), or None, said in `problems`, for a
    model with no calibrated threshold."""
    try:
        return lib.namer()
    except LibraryError as e:
        problems["faces by likeness"] = str(e)
        return None


def _agreeing(shared: dict[str, list], distance: str) -> list:
    """(name, photo, face) of the faces each name's photos share ({name: [(photo, face,
    embedding)]}) that are that name's alone: claimed by no other name, and nearer on
    average to the name's other faces than to any other name's; a photo where one face
    fails this has none of its faces named so (two people listed together, their faces
    swapped between them, are both left)."""
    from facetrain.distances import distance_matrix

    claimed = Counter(f["id"] for faces in shared.values() for _, f, _ in faces)
    emb = {n: np.stack([e for *_, e in faces]) for n, faces in shared.items() if faces}
    out, doubtful = [], set()
    for name, faces in shared.items():
        for k, (p, f, e) in enumerate(faces):
            d = {n: distance_matrix(e[None], m, distance)[0] for n, m in emb.items()}
            own = np.delete(d.pop(name), k).mean()
            if claimed[f["id"]] == 1 and all(own < x.mean() for x in d.values()):
                out.append((name, p, f))
            else:
                doubtful.add(p["id"])
    return [(name, p, f) for name, p, f in out if p["id"] not in doubtful]


def _unnamed_faces(lib, namer, photos: list) -> dict:
    """The faces no one has confirmed on these photos, as the library compares them:
    {"rows": [(photo, face)], "emb", "photo" (ids), "scale" (spacing, or None)}."""
    rows = [(p, f) for p in photos for f in store.faces_of_photo(lib.con, p["id"])
            if f["usable"] and not f["confirmed"] and f["embedding"] is not None]  # fmt: skip
    photo = np.array([p["id"] for p, _ in rows], np.int64)
    if not rows:
        return {"rows": rows, "emb": np.zeros((0, 0), np.float32), "photo": photo, "scale": None}
    emb = np.stack([store.from_blob(f["embedding"]) for _, f in rows])
    return {"rows": rows, "emb": emb, "photo": photo, "scale": namer.spacing(emb, photo)}


def _shared(namer, pool: dict, theirs: set, least: int) -> list:
    """(photo, face, embedding as compared) of the one person the photos `theirs` (ids)
    share (`cluster.shared_face`), among the faces of `pool` (`_unnamed_faces`); the rest
    of the pool is where they are not listed."""
    mine = np.isin(pool["photo"], sorted(theirs))
    if not mine.any():
        return []
    scale = pool["scale"]
    part = [(pool["emb"][m], pool["photo"][m], None if scale is None else scale[m])
            for m in (mine, ~mine)]  # fmt: skip
    chosen = shared_face(*part[0][:2], namer.threshold, namer.distance, part[0][2],
                                least, elsewhere=part[1])  # fmt: skip
    rows = [r for r, m in zip(pool["rows"], mine) if m]
    return [(*rows[i], part[0][0][i]) for i in chosen]


def named_among(lib, namer, photo, names: list[str], source: str) -> dict[str, int]:
    """The faces of a photo said to show `names` (and perhaps strangers), each named one
    of them when `namer` — the rule `identify` follows, its candidates those listed
    people not on the photo yet — is sure of it. When the photo may show someone the rule
    cannot weigh — a listed person with no confirmed face to compare with, or a stranger
    (more faces left than people listed) — a face is named only when no other face of
    the photo is within the runner-up margin of that person too: the one candidate left
    has no runner-up of its own to keep a look-alike out (bench/takeout_groups.py)."""
    every = store.faces_of_photo(lib.con, photo["id"])
    here = {f["person_id"] for f in every if f["confirmed"]}
    listed = {n: store.person_named(lib.con, n) for n in map(clean_name, names)}
    left = {n: p for n, p in listed.items() if p is None or p not in here}
    among = set(left.values()) - {None}
    faces = [f for f in every if f["usable"] and not f["confirmed"] and f["embedding"] is not None]
    if not among or not faces:
        return {"faces_named": 0}
    unweighed = len(left) > len(among & namer.people)
    crowded = sum(not f["confirmed"] for f in every) > len(left)
    emb = np.stack([store.from_blob(f["embedding"]) for f in faces])
    found = namer.name(emb, among, photo["id"], apart=unweighed or crowded)
    tags = [(r["name"], _area(f, photo)) for f, r in zip(faces, found) if r["name"] != UNKNOWN]
    return curate.name_regions(lib.con, photo, tags, f"{source}, by likeness")


def _xmp_names(photo: str, problems: dict) -> tuple[str, list, list]:
    """("sidecars" or "embedded", the named face regions, the people listed with no place)
    of a photo's XMP: its sidecar's, or, with none beside it, its own file's; what cannot
    be read goes into `problems`."""
    from facetrain.data.images import ImageError, embedded_xmp
    from facetrain.library.xmp import names_in, read_names, sidecar_of

    side = sidecar_of(photo)
    try:
        if side is not None:
            return "sidecars", *read_names(side)
        data = embedded_xmp(photo)
        return "embedded", *(names_in(data) if data else ([], []))
    except (OSError, ValueError, ImageError) as e:
        problems[str(side or photo)] = str(e)
        return "sidecars", [], []


def _picasa_contacts(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        return picasa_ini.contacts_xml(path)
    except (OSError, ValueError) as e:
        raise LibraryError(f"{path}: cannot be read as Picasa's contacts.xml ({e})") from None


def _picasa_tags(folder: str, names: dict, problems: dict) -> dict | None:
    """{photo file name, case folded: its tags} of a folder's Picasa ini, its own names
    taken before `names`; None when it has none or it cannot be read (into `problems`)."""
    ini = picasa_ini.ini_of(folder)
    if ini is None:
        return None
    try:
        sections = picasa_ini.read_ini(ini)
    except (OSError, ValueError) as e:
        problems[str(ini)] = str(e)
        return None
    tags = picasa_ini.named_faces(sections, names | picasa_ini.contacts(sections))
    return {photo.casefold(): tag for photo, tag in tags.items()}


def _only_face(faces: list):
    """A photo's one face, when it shows one and the library can use it (a second face,
    even one under the quality gate, may be the person another program named)."""
    return faces[0] if len(faces) == 1 and faces[0]["usable"] else None


def _area(face, photo) -> tuple[float, float, float, float]:
    """A face's box as a region: (cx, cy, w, h), normalised by the photo's size."""
    box = (face["x1"], face["y1"], face["x2"], face["y2"])
    return region(box, photo["width"], photo["height"])


def _by_folder(photos: dict) -> list[tuple[str, list]]:
    """Recorded photos ({path: row}) grouped by their folder."""
    out: dict[str, list] = {}
    for path, row in sorted(photos.items()):
        out.setdefault(os.path.dirname(path), []).append((path, row))
    return list(out.items())


def _shown(items: list, what: str):
    """The items, one by one, with a progress bar and its ETA on a terminal (plain lines
    in a log): an import reads every photo or folder of a library."""
    from facetrain.progress import progress_bar

    with progress_bar() as bar:
        task = bar.add_task(what, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
