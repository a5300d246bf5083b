"""Choose triplets and pairs inside a batch (online mining), apart from the losses.

Each miner takes the batch's embeddings and labels and returns index tensors into the
batch; it looks at detached distances only, so the loss is computed from the one forward
pass and its gradients reach every selected triplet or pair. Definitions (squared L2
distances, α the margin):

- `all_triplets`: every (a, p, n) with y_a = y_p ≠ y_n, a ≠ p.
- `semihard`: FaceNet's semi-hard negatives, d_ap < d_an < d_ap + α; one drawn at random
  per anchor-positive pair (pairs without one are skipped).
- `hardest`: the closest negative of each anchor-positive pair.
- `random_violating`: a random negative with d_an − d_ap < α (OpenFace's, from VGG Face).
- `balanced_pairs`: every positive pair and as many random negative pairs (contrastive).

Identities with one image in the batch (e.g. the extra identities a P×K sampler can add)
have no positive pair, so they serve as negatives only.
"""

from facetrain.miners.pairs import balanced_pairs
from facetrain.miners.triplets import (
    TRIPLET_MINERS,
    all_triplets,
    mine_triplets,
    positive_pairs,
)

__all__ = ["TRIPLET_MINERS", "all_triplets", "balanced_pairs", "mine_triplets", "positive_pairs"]
