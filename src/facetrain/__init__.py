"""facetrain: train face-recognition embedding models end to end, and put them to work."""

__version__ = "0.1.0"
