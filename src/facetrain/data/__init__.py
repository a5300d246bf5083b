"""Reading face datasets: folders of photos per identity, list files, packed shards, RecordIO."""

from facetrain.data.images import IMAGE_EXTENSIONS, ImageError, load_rgb
from facetrain.data.listing import Sample, iter_samples, parse_roots

__all__ = ["IMAGE_EXTENSIONS", "ImageError", "Sample", "iter_samples", "load_rgb", "parse_roots"]


def __getattr__(name: str):  # PackedDataset pulls in torch: import it only when asked for
    if name == "PackedDataset":
        from facetrain.data.packed import PackedDataset

        return PackedDataset
    raise AttributeError(name)
