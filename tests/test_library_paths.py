"""A scan sees exactly the photos below its folder: no SQL wildcard, no case folding."""

from __future__ import annotations

import pytest

from facetrain.library.store import connect, photos_under

PATHS = [
    "/p/my-pics/a.jpg",
    "/p/my_pics/b.jpg",
    "/p/myXpics/c.jpg",
    "/p/Trip/d.jpg",
    "/p/trip/e.jpg",
    "/p/trip2/f.jpg",
    "/p/100%/g.jpg",
    "/p/1000/h.jpg",
    "/p/trip/sub/i.jpg",
]


@pytest.mark.parametrize(
    "root, want",
    [
        ("/p/my_pics", {"/p/my_pics/b.jpg"}),  # `_` is no wildcard
        ("/p/my-pics", {"/p/my-pics/a.jpg"}),
        ("/p/trip", {"/p/trip/e.jpg", "/p/trip/sub/i.jpg"}),  # not Trip, not trip2
        ("/p/Trip", {"/p/Trip/d.jpg"}),
        ("/p/100%", {"/p/100%/g.jpg"}),  # `%` is no wildcard
        ("/p/trip/", {"/p/trip/e.jpg", "/p/trip/sub/i.jpg"}),
    ],
)
def test_photos_under_is_an_exact_prefix(tmp_path, root, want):
    con = connect(tmp_path / "lib.db", create=True)
    for k, p in enumerate(PATHS):
        con.execute("INSERT INTO photos(path, sha256, status) VALUES (?, ?, 'ok')", (p, f"h{k}"))
    assert set(photos_under(con, root)) == want
