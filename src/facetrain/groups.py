"""Rows grouped by an integer label, each group in the rows' own order: the one way the
library's clustering and the classifier's hold-out walk their groups."""

from __future__ import annotations

import numpy as np


def by_label(labels: np.ndarray) -> list[np.ndarray]:
    """The row indices of each label 0..k-1, in order of label; within a label, in row order
    (a label no row has is an empty group)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.cumsum(np.bincount(labels))[:-1])
