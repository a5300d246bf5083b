"""Personal models: a small adapter learnt from the faces the owner has named, so that their
own people separate better — and measured on faces it did not learn from before it is used.

The adapter is a learned affine map of the library model's embedding (D x D, starting at
the identity), not a retrained last block: it needs only the embeddings the library already
stores, so learning takes seconds on a laptop CPU, no photo is read again, switching it on
or off re-clusters at once, and it is a few hundred kB that never leaves the library file.
It learns from
- positives: confirmed faces of one named person;
- negatives: faces of two different named people, and two faces of one photo (never the
  same person, named or not);
mined online (only the pairs on the wrong side of the threshold, with a margin, count), and
- a term that keeps the general model's geometry for everyone else: every distance but
  those between two named faces (a stranger to a named face, say) stays what the plain
  model says.
Through the adapter the threshold is calibrated on named faces it did not learn from: a
fifth of each person's confirmed faces is set aside, an adapter learnt on the rest, and the
best-accuracy threshold taken over pairs of a set-aside face and a learnt one; then the
adapter is learnt again from all of them. Refitted to the faces it learnt from, the
threshold would be fitted to the very faces the adapter learnt to separate — too loose
for strangers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from facetrain.devices import cpu_threads
from facetrain.distances import distance_matrix
from facetrain.library.store import LibraryError

MIN_PEOPLE, MIN_FACES = 2, 5
STEPS = 300
ROUNDS = 3
# The set-aside faces' pairs the threshold through the adapter is fitted on, at most: every
# pair of 50,000 named faces' fifth with the rest would take 3 GB; 4,000,000 is every pair
# of a library of up to about 4,500 named faces, a random sample of the rest beyond.
ASIDE_PAIRS = 4_000_000
KEEP = 10.0  # weight of the geometry kept for everyone else (1, 3, 10 tried: docs/benchmarks.md)


class PersonalizeError(LibraryError):
    """Too few named faces to learn from, or a library the adapter does not fit."""


@dataclass
class Faces:
    """The faces to learn from, as arrays: the plain model's embeddings, the named person of
    each (-1: not named) and its photo (two faces of one photo are two people)."""

    emb: np.ndarray
    person: np.ndarray
    photo: np.ndarray
    truth: np.ndarray | None = None  # for measuring only: who each face is, where known

    def who(self) -> np.ndarray:
        """Each face's true person as far as known: `truth`, else the owner's name."""
        return self.person if self.truth is None else self.truth


@dataclass
class Adapter:
    """y = W x + b, re-normalised to unit length when the model's embeddings are unit
    vectors."""

    weight: np.ndarray
    bias: np.ndarray
    unit: bool

    def apply(self, emb: np.ndarray) -> np.ndarray:
        if len(emb) == 0:
            return emb
        y = np.asarray(emb, np.float32) @ self.weight.T + self.bias
        if self.unit:
            y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y.astype(np.float32)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, weight=self.weight, bias=self.bias, unit=np.array(self.unit))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, b: bytes) -> Adapter:
        z = np.load(io.BytesIO(b))
        return cls(z["weight"], z["bias"], bool(z["unit"]))


def enough(person: np.ndarray) -> None:
    """PersonalizeError saying what is missing unless MIN_PEOPLE people have MIN_FACES
    confirmed faces each."""
    ids, counts = np.unique(person[person >= 0], return_counts=True)
    ready = int((counts >= MIN_FACES).sum())
    if ready < MIN_PEOPLE:
        have = ", ".join(f"{n} faces" for n in sorted(counts.tolist(), reverse=True)) or "none"
        raise PersonalizeError(
            f"learning from your names needs {MIN_PEOPLE} named people with at least "
            f"{MIN_FACES} confirmed faces each; {ready} have that (named people now: {have}). "
            "Name or confirm more faces first"
        )


def _photo_pairs(photo: np.ndarray, rng: np.random.Generator, cap: int = 20000) -> np.ndarray:
    """Pairs of faces of one photo (index pairs), at most `cap`, sampled."""
    order = np.argsort(photo, kind="stable")
    starts = np.flatnonzero(np.r_[True, photo[order][1:] != photo[order][:-1]])
    pairs = [(order[s + i], order[s + j])
             for s, e in zip(starts, np.r_[starts[1:], len(order)]) if e - s > 1
             for i in range(e - s) for j in range(i + 1, e - s)]  # fmt: skip
    pairs = np.array(pairs, np.int64).reshape(-1, 2)
    return pairs[rng.choice(len(pairs), cap, replace=False)] if len(pairs) > cap else pairs


def _hinge(x: torch.Tensor) -> torch.Tensor:
    """Mean over the violating pairs only (online mining: the easy ones do not dilute)."""
    v = torch.relu(x)
    return v.sum() / (v > 0).sum().clamp_min(1)


def train_adapter(faces: Faces, threshold: float, distance: str, *, steps: int = STEPS,
                  seed: int = 0, keep: float = KEEP, far: float = 1.0,
                  on_step=None) -> Adapter:  # fmt: skip
    """The adapter for these faces at the library's threshold. on_step(step, steps, loss).
    On one CPU thread: as fast as two for matrices this small, and never slowed by a busy
    machine (551 s at torch's default threads against 88 s on one)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    x = torch.from_numpy(np.asarray(faces.emb, np.float32))
    unit = bool(np.abs(np.linalg.norm(faces.emb, axis=1) - 1).max() < 1e-2)
    w = torch.nn.Parameter(torch.eye(x.shape[1]))
    b = torch.nn.Parameter(torch.zeros(x.shape[1]))
    opt = torch.optim.Adam([w, b], lr=2e-3)

    def f(idx) -> torch.Tensor:
        y = x[idx] @ w.T + b
        return torch.nn.functional.normalize(y, dim=1) if unit else y

    draws = _Draws.of(faces, _photo_pairs(faces.photo, rng))
    with cpu_threads(1):
        for step in range(steps):
            loss = _adapter_loss(f, x, draws, rng, threshold, distance, keep, far)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step(step + 1, steps, float(loss))
    return Adapter(w.detach().numpy().copy(), b.detach().numpy().copy(), unit)


@dataclass
class _Draws:
    """What each step of the adapter samples from, found once: each face's named person,
    the named faces, the unnamed ones, and pairs of faces of one photo."""

    person: np.ndarray
    named: np.ndarray
    unnamed: np.ndarray
    pairs: np.ndarray

    @classmethod
    def of(cls, faces: Faces, pairs: np.ndarray) -> _Draws:
        person = faces.person
        return cls(person, np.flatnonzero(person >= 0), np.flatnonzero(person < 0), pairs)


def _adapter_loss(f, x: torch.Tensor, draws: _Draws, rng, threshold: float, distance: str,
                  keep: float, far: float) -> torch.Tensor:  # fmt: skip
    """One step's loss on sampled faces: named people within and apart by a margin around
    the threshold, two faces of one photo apart, a face clearly someone else's in the plain
    model still so, and every other pair's distance kept as it was (weight `keep`)."""
    named, unnamed, pairs = draws.named, draws.unnamed, draws.pairs
    margin = 0.2 * threshold
    nb = rng.choice(named, min(512, len(named)), replace=False)
    y, lab = f(nb), torch.from_numpy(draws.person[nb])
    d = distance_matrix(y, y, distance)
    same = (lab[:, None] == lab[None, :]) & ~torch.eye(len(nb), dtype=torch.bool)
    diff = lab[:, None] != lab[None, :]
    loss = _hinge(d[same] - (threshold - margin)) + _hinge(threshold + margin - d[diff])
    if len(pairs):
        pb = pairs[rng.choice(len(pairs), min(512, len(pairs)), replace=False)]
        dp = torch.diagonal(distance_matrix(f(pb[:, 0]), f(pb[:, 1]), distance))
        loss = loss + _hinge(threshold + margin - dp)
    if len(unnamed):
        ub = rng.choice(unnamed, min(256, len(unnamed)), replace=False)
        d_nu, d_nu_old = (
            distance_matrix(y, f(ub), distance),
            distance_matrix(x[nb], x[ub], distance),
        )
        loss = loss + _hinge(threshold + margin - d_nu[d_nu_old > far * threshold])
    kb = rng.choice(len(x), min(384, len(x)), replace=False)
    d_new, d_old = distance_matrix(f(kb), f(kb), distance), distance_matrix(x[kb], x[kb], distance)
    n = torch.from_numpy(draws.person[kb] >= 0)
    other = ~(n[:, None] & n[None, :])  # every pair but two named faces: kept as it was
    return loss + keep * ((d_new - d_old)[other] / threshold).pow(2).mean()


def fit_threshold(emb: np.ndarray, person: np.ndarray, distance: str) -> float:
    """The library's own rule (Library.threshold_and_why): the best-accuracy threshold over
    pairs of the named faces."""
    from facetrain.evaluate.verification import labelled_threshold

    return labelled_threshold(emb, [str(p) for p in person], distance)


def learn(faces: Faces, distance: str, seed: int = 0, steps: int = STEPS, **kw):
    """(adapter from every named face, the plain threshold, the threshold through the
    adapter calibrated on set-aside named faces)."""
    from facetrain.evaluate.verification import best_threshold

    named = np.flatnonzero(faces.person >= 0)
    thr = fit_threshold(faces.emb[named], faces.person[named], distance)
    rng = np.random.default_rng(seed + 1000)
    aside = []
    for p in np.unique(faces.person[named]):
        idx = rng.permutation(np.flatnonzero(faces.person == p))
        aside += idx[: max(1, len(idx) // 5)].tolist() if len(idx) >= 3 else []
    aside = np.array(aside, np.int64)
    fit_person = faces.person.copy()
    fit_person[aside] = -1
    trial = train_adapter(Faces(faces.emb, fit_person, faces.photo), thr, distance,
                          steps=steps, seed=seed, **kw)  # fmt: skip
    e, fit = trial.apply(faces.emb), np.flatnonzero(fit_person >= 0)
    if len(aside) * len(fit) > ASIDE_PAIRS:  # tens of thousands of named faces: a sample
        fit = np.sort(rng.choice(fit, max(1, ASIDE_PAIRS // len(aside)), replace=False))
    d = distance_matrix(e[aside], e[fit], distance).ravel()
    same = (faces.person[aside][:, None] == faces.person[fit][None, :]).ravel()
    thr_after = best_threshold(d, same, distance)
    adapter = train_adapter(faces, thr, distance, steps=steps, seed=seed, **kw)
    return adapter, thr, thr_after


def holdout(faces: Faces, fraction: float, rng: np.random.Generator):
    """(training faces, held-back named faces, stranger faces): with 3+ named people a third
    of them (at least one) become strangers, their names forgotten; of each other person,
    `fraction` of the confirmed faces (at least one, leaving at least two) are held back.
    Held-back and strangers' faces stay in the training faces, unnamed — as in a library,
    where they are faces the owner has not named."""
    people, counts = np.unique(faces.person[faces.person >= 0], return_counts=True)
    kept = people[np.argsort(-counts, kind="stable")[:2]]  # the two best-known stay named
    pool = np.setdiff1d(people, kept)
    strangers = rng.choice(pool, len(people) // 3, replace=False) if len(people) >= 3 else []
    person = faces.person.copy()
    held = []
    for p in people:
        idx = rng.permutation(np.flatnonzero(faces.person == p))
        if p in strangers:
            person[idx] = -1
            continue
        k = max(0, min(max(1, round(fraction * len(idx))), len(idx) - 2))
        held += idx[:k].tolist()
        person[idx[:k]] = -1
    known_unnamed = (faces.person < 0) & (faces.who() >= 0)  # people the owner never named
    stranger_idx = np.flatnonzero(np.isin(faces.person, strangers) | known_unnamed)
    return Faces(faces.emb, person, faces.photo), np.array(held, np.int64), stranger_idx


def _figures(e: np.ndarray, faces: Faces, train: Faces, held: np.ndarray, strangers: np.ndarray,
             distance: str, thr: float | None = None) -> dict:  # fmt: skip
    """identify accuracy, stranger false-name rate and BCubed F in one embedding space `e`
    (the plain or the adapted embeddings of `faces`)."""
    from facetrain.library.evaluate import scores
    from facetrain.open_set import MARGIN, UNKNOWN, identify_each

    t = np.flatnonzero(train.person >= 0)
    thr = fit_threshold(e[t], train.person[t], distance) if thr is None else thr
    protos = (e[t], train.person[t], {int(p): str(p) for p in np.unique(train.person[t])})

    def named(e):
        return [x["name"] for x in identify_each(e, protos, thr, distance, MARGIN)]

    got = named(e[held])
    out = {"threshold": thr, "identify_accuracy":
           float(np.mean([g == str(p) for g, p in zip(got, faces.person[held])]))}  # fmt: skip
    out["stranger_false_name_rate"] = (
        float(np.mean([g != UNKNOWN for g in named(e[strangers])])) if len(strangers) else None
    )
    both = np.r_[held, strangers]  # scored where the truth is known to the measurement
    labels = library_stacks(e, train, thr, distance)[both]
    out["bcubed_f"] = scores(labels.tolist(), faces.who()[both].tolist())["bcubed_f"]
    return out


def library_stacks(e: np.ndarray, train: Faces, thr: float, distance: str) -> np.ndarray:
    """A stack label per face of the whole library, made as `library cluster` makes them
    (the library's spacing, the named faces pinned to their people): the stacks the owner
    would see, not a re-clustering of the measured faces alone (which called a stack that
    mixed two people 100% right)."""
    from facetrain.library.cluster import FaceSet, People, recluster, with_spacing

    free = np.flatnonzero(train.person < 0)
    named = np.flatnonzero(train.person >= 0)
    fs = FaceSet(free, e[free], train.photo[free])
    people = People(e[named], train.person[named], train.photo[named])
    fs, people = with_spacing(fs, people, distance)
    plan = recluster(fs, people, set(), thr, distance)
    labels = np.full(len(e), -1, np.int64)
    labels[named] = train.person[named]
    top = int(labels.max()) + 1
    for person, ids in plan.to_person:
        labels[ids] = person
    for k, ids in enumerate(plan.new_stacks):
        labels[ids] = top + k
    return labels


KEYS = ("bcubed_f", "identify_accuracy", "stranger_false_name_rate", "threshold")


def digest(faces: Faces) -> str:
    """What a measurement depends on: a finished round of the same faces can be kept."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(faces.emb, np.float32).tobytes())
    h.update(faces.person.astype(np.int64).tobytes() + faces.photo.astype(np.int64).tobytes())
    return h.hexdigest()


def measure(faces: Faces, distance: str, *, fraction: float = 0.3, rounds: int = ROUNDS,
            seed: int = 0, steps: int = STEPS, keep: float = KEEP, far: float = 1.0,
            done: list | None = None,
            on_round=None) -> dict:  # fmt: skip
    """Before/after figures on held-back faces, averaged over `rounds` random hold-outs:
    KEY_before and KEY_after for KEYS, and how many faces each round held back. `done`:
    rounds finished before (a resumed job); on_round(round, rounds, finished rounds)."""
    enough(faces.person)
    runs = [tuple(r) for r in (done or [])][:rounds]
    for r in range(len(runs), rounds):
        train, held, strangers = holdout(faces, fraction, np.random.default_rng(seed + r))
        adapter, thr, thr_after = learn(train, distance, seed + r, steps, keep=keep, far=far)
        before = _figures(faces.emb, faces, train, held, strangers, distance, thr)
        after = _figures(adapter.apply(faces.emb), faces, train, held, strangers, distance,
                         thr_after)  # fmt: skip
        runs.append((before, after, len(held), len(strangers)))
        if on_round is not None:
            on_round(r + 1, rounds, runs)
    out = {}
    for k in KEYS:
        for i, when in enumerate(("before", "after")):
            v = [run[i][k] for run in runs]
            out[f"{k}_{when}"] = None if None in v else round(float(np.mean(v)), 4)
    out |= {"held_back_faces": runs[0][2], "stranger_faces": runs[0][3], "rounds": rounds}
    return out | {"verdict": verdict(out)}


def verdict(r: dict) -> str:
    """What the measurement says, in words (a point is 0.01)."""
    named = r["identify_accuracy_after"] - r["identify_accuracy_before"]
    stacks = r["bcubed_f_after"] - r["bcubed_f_before"]
    s0, s1 = r["stranger_false_name_rate_before"], r["stranger_false_name_rate_after"]
    strangers = 0.0 if s0 is None else s1 - s0
    better = [
        w
        for w, good in (
            ("naming your people", named >= 0.01),
            ("the stacks", stacks >= 0.02),
            ("strangers (named less often)", strangers <= -0.01),
        )
        if good
    ]
    worse = [
        w
        for w, bad in (
            ("naming your people", named <= -0.01),
            ("the stacks", stacks <= -0.02),
            ("strangers (named more often)", strangers > 0.01),
        )
        if bad
    ]
    if better and worse:
        return f"mixed: better for {', '.join(better)}; worse for {', '.join(worse)}"
    if worse:
        return "worse for " + ", ".join(worse) + ": consider `library personalize --off`"
    if better:
        same = s0 is not None and -0.01 < strangers <= 0.01
        return "better for " + ", ".join(better) + ("; no worse for strangers" if same else "")
    return "no clear change on the held-back faces"
