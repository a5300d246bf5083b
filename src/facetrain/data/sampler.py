"""Which images form each batch — random access by (epoch, batch), so a resumed run
continues with exactly the batches an uninterrupted run would have seen.

`EpochBatches`: plain shuffling for classifier losses, a fresh permutation per pass over the
data; `batches_per_epoch` decouples an "epoch" from a full pass (FaceNet's --epoch_size).
`PKBatches`: P identities x K images each for metric losses (every batch holds positives),
plus optionally E extra identities with one image each, as negatives (FaceNet paper).
"""

from __future__ import annotations

import numpy as np

from facetrain.errors import FacetrainError
from facetrain.progress import counted


class SamplerError(FacetrainError):
    pass


class EpochBatches:
    def __init__(self, n: int, batch_size: int, *, seed: int = 0, batches_per_epoch: int = 0):
        if n == 0:
            raise SamplerError("the dataset is empty")
        if batch_size > n:
            many = counted(n, "image")
            raise SamplerError(f"batch size {batch_size} is larger than the dataset ({many})")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.batches_per_epoch = batches_per_epoch or n // batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _perm(self, cycle: int) -> np.ndarray:
        return np.random.default_rng([self.seed, cycle]).permutation(self.n)

    def batch(self, epoch: int, b: int) -> list[int]:
        """Batch b of epoch: a slice of an endless stream of permutations (drop-last)."""
        per_cycle = self.n // self.batch_size
        g = epoch * self.batches_per_epoch + b
        cycle, k = divmod(g, per_cycle)
        return self._perm(cycle)[k * self.batch_size : (k + 1) * self.batch_size].tolist()


class PKBatches:
    def __init__(
        self,
        labels: np.ndarray,
        p: int,
        k: int,
        *,
        extra: int = 0,
        seed: int = 0,
        batches_per_epoch: int = 0,
    ):
        labels = np.asarray(labels)
        if len(labels) == 0:
            raise SamplerError("the dataset is empty")
        order = np.argsort(labels, kind="stable")
        ids, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        self.by_id = {int(i): order[s : s + c] for i, s, c in zip(ids, starts, counts)}
        self.eligible = np.array([i for i, c in zip(ids, counts) if c >= k])
        if len(ids) < 2:
            raise SamplerError("metric losses need at least 2 identities")
        if len(self.eligible) == 0:
            raise SamplerError(
                f"K={k} images per identity is more than any identity has (max {counts.max()})"
            )
        if p > len(self.eligible):
            n = len(self.eligible)
            raise SamplerError(
                f"P={p} identities per batch, but only {n} have at least K={k} images: a "
                f"batch of {n} x {k} fits (--batch-size {n * k + extra}, or --set "
                f"identities_per_batch={n}), or fewer images of each (--set "
                "images_per_identity=…)"
            )
        if p < 2 and extra == 0:
            raise SamplerError(
                "a batch needs at least 2 identities (--set identities_per_batch=2 or more, "
                "or extra_identities=1)"
            )
        if extra > len(ids) - p:  # (a batch of fewer faces than it says, in silence)
            raise SamplerError(
                f"extra_identities={extra}, but only {len(ids) - p} identities are left "
                f"besides the batch's P={p} (--set extra_identities={len(ids) - p} at most)"
            )
        self.ids = ids
        self.p, self.k, self.extra, self.seed = p, k, extra, seed
        self.batch_size = p * k + extra
        self.batches_per_epoch = batches_per_epoch or max(1, len(labels) // (p * k))

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, epoch: int, b: int) -> list[int]:
        rng = np.random.default_rng([self.seed, epoch, b])
        chosen = rng.choice(self.eligible, self.p, replace=False)
        out: list[int] = []
        for i in chosen:
            out += rng.choice(self.by_id[int(i)], self.k, replace=False).tolist()
        if self.extra:
            rest = np.setdiff1d(self.ids, chosen)
            for i in rng.choice(rest, self.extra, replace=False):
                out.append(int(rng.choice(self.by_id[int(i)])))
        return out
