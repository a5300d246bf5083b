"""facetrain: train face-recognition embedding models end to end, and put them to work."""

__version__ = "0.1.0"


def load(model=None, device: str = "cpu"):
    """A model ready to use: `.faces(photo)`, `.embed(images)` (see facetrain.use.api)."""
    from facetrain.use.api import load as _load

    return _load(model, device)
