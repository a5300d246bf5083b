"""Unnamed stacks as rivals of a name: a new face is not given a named person's name when
a stack the owner has not named — a person the model keeps apart from the named one — is
nearer to it than the named person is.

Open-set naming compares a new face with the named people only. In a small library of
people the model crowds (South-Asian actors, 6 people of 8 photos, two named), a stranger
whose own photos sit unnamed in the library was given the nearest named person's name
11.5% of the time; looking at the unnamed stacks near the face as well brought that to
7.6%, and to 4.8% from 10.0% with three named, lowering it on every population and
raising it on none (bench/small_libraries.py; the cost, named people's faces left
`unknown`, is in docs/benchmarks.md). A stack is a rival only when:

- it holds `FACES` faces or more: two faces are too little evidence of a person (with
  stacks of two, the mini-train family lost a named face in a hundred);
- the model keeps it apart from the named person: the mean distance between its faces and
  the person's (their stack as the owner sees it, confirmed and suggested faces) is above
  the threshold. A person's own unconfirmed faces
  that clustering left in another stack (`photos/friends`: 0.12-0.14 from the person) then
  never take the person's name away: with no such test, `friends` kept 18% of its named
  people's names instead of 91%.

Only the stacks with a face under the threshold of the new face are looked at, and a
stack's spacing is measured once, the first time a face comes near it, so making the
namer measures nothing more than before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrain.distances import distance_matrix, row_squares, to_rows
from facetrain.neighbours import pair_limits

FACES = 3  # the fewest faces a stack holds to stand for a person


@dataclass
class Rivals:
    """The library's faces as the namer compares them (not copied), each with its unnamed
    stack of `FACES` or more faces (-1: none) and its stack, named or not (`person`); the
    faces of each unnamed stack found by a slice of `order` (a stack's faces, not a pass
    over the library, for each stack near a face); and what has been measured of those
    stacks so far."""

    emb: np.ndarray
    stack: np.ndarray
    photo: np.ndarray
    person: np.ndarray
    order: np.ndarray  # the unnamed stacks' faces, stack after stack
    slices: dict  # stack id: (start, end) in order
    _spacing: dict = field(default_factory=dict)
    _apart: dict = field(default_factory=dict)
    _norms: np.ndarray | None = None

    @classmethod
    def of(cls, emb: np.ndarray, person: np.ndarray, photo: np.ndarray,
           named: set[int]) -> Rivals | None:  # fmt: skip
        """Rivals among faces of stacks `person` (-1: none), `named` the named people's
        ids; None when no unnamed stack is large enough."""
        unnamed = (person >= 0) & ~np.isin(person, sorted(named))
        ids, counts = np.unique(person[unnamed], return_counts=True)
        big, sizes = ids[counts >= FACES], counts[counts >= FACES]
        if not len(big):
            return None
        stack = np.where(np.isin(person, big), person, -1)
        order = np.flatnonzero(stack >= 0)
        order = order[np.argsort(stack[order], kind="stable")]
        ends = np.cumsum(sizes)
        slices = {int(u): (int(e - c), int(e)) for u, c, e in zip(big, sizes, ends)}
        return cls(emb, stack, photo, person, order, slices)

    def nearer(self, face: np.ndarray, best: float, person: int, namer,
               qscale: float | None) -> int | None:  # fmt: skip
        """The unnamed stack nearer to `face` (of a new photo) than the named person it
        would get — whose distance is `best` and whose id is `person` — and kept apart
        from that person's stack; else None. Stacks are measured as
        the namer measures people: with the face's spacing `qscale`, the mean over the
        stack's faces in units of each pair's limit; without, the nearest face."""
        d = to_rows(face, self.emb, namer.distance, self._squares(namer.distance))
        for u in np.unique(self.stack[(self.stack >= 0) & (d < namer.threshold)]).tolist():
            mine = self.faces_of(u)
            if self._distance(u, mine, d, namer, qscale) < best and self._apart_from(
                u, mine, person, namer
            ):
                return u
        return None

    def faces_of(self, u: int) -> np.ndarray:
        """The indices of an unnamed stack's faces."""
        start, end = self.slices[u]
        return self.order[start:end]

    def _squares(self, distance: str) -> np.ndarray | None:
        """The faces' squared norms (`distances.row_squares`), measured for the first face
        looked at."""
        if self._norms is None:
            self._norms = row_squares(self.emb, distance)
        return self._norms

    def _distance(self, u: int, mine: np.ndarray, d: np.ndarray, namer, qscale) -> float:
        if qscale is None:
            return float(d[mine].min())
        if u not in self._spacing:
            self._spacing[u] = namer.spacing(self.emb[mine], self.photo[mine])
        limits = pair_limits(np.array([qscale]), self._spacing[u], namer.threshold)[0]
        return float(np.mean(d[mine] / np.maximum(limits, 1e-12)))

    def _apart_from(self, u: int, mine: np.ndarray, person: int, namer) -> bool:
        """Whether the mean distance between stack u's faces and the person's stack (its
        confirmed and suggested faces) is above the threshold; measured once a pair."""
        if (u, person) not in self._apart:
            theirs = self.emb[self.person == person]
            mean = float(distance_matrix(self.emb[mine], theirs, namer.distance).mean())
            self._apart[(u, person)] = mean > namer.threshold
        return self._apart[(u, person)]
