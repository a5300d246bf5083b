"""The one path by which training data reaches a model: the images a sampler chose for
(epoch, batch), decoded from the pack, augmented and resized into a float batch — on the
training device when asked (GPU JPEG decoding and augmentation there).

Nothing here draws its own randomness: augmentation takes the generator the caller seeded
from the global step, and the sampler is addressed by (epoch, batch), so a resumed run sees
exactly the batches an uninterrupted one would. `bench/loader.py` measures this loader.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facetrain.data.augment import Augment, apply, resize
from facetrain.data.packed import PackedDataset


@dataclass
class TrainLoader:
    ds: PackedDataset
    sampler: object  # batch(epoch, b) -> the global batch's image indices; len(): batches
    augment: Augment
    size: int  # the model's input side
    device: str | None = None  # decode and augment there (None: on the CPU)

    def __len__(self) -> int:
        return len(self.sampler)

    def indices(self, epoch: int, b: int) -> list[int]:
        """The images of batch b of the epoch, for every process together."""
        return self.sampler.batch(epoch, b)

    def batch(self, ids, generator: torch.Generator | None = None):
        """(float input batch, labels) of these images: decoded, augmented with `generator`,
        resized to the model's side."""
        x, y = self.ds.batch(ids, self.device)
        # the batch was just decoded into memory of its own: augmented in place
        return resize(apply(x, self.augment, generator, inplace=True), self.size), y
