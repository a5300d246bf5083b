"""facetrain: train face-recognition embedding models end to end, and put them to work."""

from __future__ import annotations

__version__ = "0.1.0"

_LOADED: dict = {}


def load(model=None, device: str = "cpu"):
    """A model ready to use: `.faces(photo)`, `.embed(images)`, `.distance(a, b)`,
    `.verify(a, b)`, `.find(photo, folder)` (see facetrain.use.api)."""
    from facetrain.use.api import load as _load

    return _load(model, device)


def _recognizer(model, device: str):
    key = (str(model), device)
    if key not in _LOADED:
        _LOADED[key] = load(model, device)
    return _LOADED[key]


def verify(a, b, model=None, device: str = "cpu") -> dict:
    """Are two images (paths, PIL images or arrays) of one person, by their nearest faces?
    One call: {"verified", "sure", "distance", "threshold", "sure_below", "face_a", "face_b",
    "model"}; "sure" is False for a "verified" at a distance where the model puts different
    people of some population; face_a/face_b say which face of a group photo."""
    return _recognizer(model, device).verify(a, b)


def find(image, where, model=None, device: str = "cpu", face: int | None = None,
         workers: int = 1) -> list[dict]:  # fmt: skip
    """One call: in a folder of photos, those whose face is the face of `image` (path and
    distance, nearest first; `face`: which face of a group photo, numbered as `verify`
    numbers them, else its central one; `workers`: processes reading the folder's photos
    not looked at before, 0 to let facetrain choose as `facetrain find` does); in a
    library file (`.db`), the named person of each face of `image` (as `library
    identify`)."""
    from pathlib import Path

    if not Path(where).exists():
        raise FileNotFoundError(f"{where}: no such folder of photos or library to look in")
    if Path(where).is_file():
        from facetrain.library.library import Library

        if not str(image).strip() or not Path(image).exists():
            raise ValueError(f"{image}: a photo on disk is needed to look it up in a library")
        if Path(image).is_dir():  # it answered for the folder's first photo alone
            raise ValueError(f"{image}: a folder; find looks up one photo in a library "
                             "(`Library.identify` names every photo of a folder)")  # fmt: skip
        with Library(where, lock=False) as lib:
            return lib.identify([str(image)], model=model, device=device)[0]["faces"]
    return _recognizer(model, device).find(image, where, face, workers)
