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
The adapter makes the stacks: clustering, new photos' faces placed among the stacks,
split and "same person?" see faces through it, with the library's own rules — the model's
calibrated threshold as the ceiling of each pair's limit, the library's spacing, a
threshold fitted to the named people where they show the model's too strict. A threshold
of its own, calibrated on the named people alone, was fitted to the very people the
adapter had learnt to separate: too loose for strangers in a CelebA family (stacks F 0.827
-> 0.773), too tight for an East-Asian family's own new photos (named right 63.8% ->
46.2%). Names stay the plain model's: through the adapter, the named people of an
East-Asian family were named far more often (6 people of 10 photos, 3 named: 59.7% ->
90.3%), but so were the strangers (9.7% -> 19.4%), because the adapter separates the named
people from each other and leaves strangers between them where they were
(bench/personalize_populations.py).

The adapter is switched on only when it helps on the owner's own faces: measured the
library's way (its stacks, its namer) on faces held back from it, better on one figure and
worse on none (`helps`). An adapter that would make any figure worse is kept off unless
the owner asks for it anyway.
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
    """The best-accuracy threshold over pairs of the named faces: where the adapter's
    margins are drawn."""
    from facetrain.evaluate.verification import labelled_threshold

    return labelled_threshold(emb, [str(p) for p in person], distance)


def learn(faces: Faces, distance: str, seed: int = 0, steps: int = STEPS, **kw) -> Adapter:
    """The adapter from every named face."""
    named = faces.person >= 0
    thr = fit_threshold(faces.emb[named], faces.person[named], distance)
    return train_adapter(faces, thr, distance, steps=steps, seed=seed, **kw)


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
             distance: str, thr: float, plain: float) -> dict:  # fmt: skip
    """identify accuracy, stranger false-name rate and BCubed F with the faces' stacks made
    in one embedding space `e` (the plain or the adapted embeddings of `faces`), as the
    library decides: its threshold there (`thr`, `_threshold` of `e`), its stacks, and its
    namer, which compares faces as the plain model sees them (`Library.namer`, at `plain`,
    `_threshold` of the plain embeddings) among those stacks."""
    from facetrain.library.evaluate import scores

    labels = library_stacks(e, train, thr, distance)
    both = np.r_[held, strangers]  # scored where the truth is known to the measurement
    f = scores(labels[both].tolist(), faces.who()[both].tolist())["bcubed_f"]
    return {"threshold": thr, "bcubed_f": f} | _names(faces.emb, faces, train, labels, held,
                                                      strangers, plain, distance)  # fmt: skip


def _threshold(e: np.ndarray, train: Faces, distance: str, model_thr: float) -> float:
    """The library's threshold for faces `e`: fitted to the named ones where they show the
    model's too strict (`curate.fitted_threshold`), else the model's."""
    from facetrain.library.curate import fitted_threshold

    t = np.flatnonzero(train.person >= 0)
    fitted = fitted_threshold(model_thr, distance, e[t], train.person[t])
    return model_thr if fitted is None else fitted[0]


def _names(e: np.ndarray, faces: Faces, train: Faces, labels: np.ndarray, held: np.ndarray,
           strangers: np.ndarray, thr: float, distance: str) -> dict:  # fmt: skip
    """The held-back faces of named people given their name, and every other face of the
    strangers given any: each asked as a face of a new photo, of the library's namer over
    the rest of the library (faces `e`, stacks `labels`: its rivals, its spacing)."""
    from facetrain.library.curate import namer_of
    from facetrain.open_set import UNKNOWN

    asked = np.r_[held, strangers[::2]]  # the strangers' other faces stay, unnamed stacks
    rest = np.setdiff1d(np.arange(len(e)), asked)
    t = rest[train.person[rest] >= 0]
    names = {int(p): str(p) for p in np.unique(train.person[t])}
    namer = namer_of((e[rest], labels[rest], train.photo[rest]),
                     (e[t], train.person[t], train.photo[t]), names, thr, distance, "")  # fmt: skip
    got = np.array([namer.name(e[i][None])[0]["name"] for i in asked], dtype=object)
    mine = np.arange(len(asked)) < len(held)
    right = got[mine] == faces.person[held].astype(str)
    return {"identify_accuracy": float(np.mean(right)) if len(held) else None,
            "stranger_false_name_rate": float(np.mean(got[~mine] != UNKNOWN))
            if (~mine).any() else None}  # fmt: skip


def library_stacks(e: np.ndarray, train: Faces, thr: float, distance: str) -> np.ndarray:
    """A stack label per face of the whole library, made as `library cluster` makes them
    (the library's spacing, the named faces pinned to their people): the stacks the owner
    would see, not a re-clustering of the measured faces alone (which called a stack that
    mixed two people 100% right)."""
    from facetrain.library.cluster import FaceSet, People, recluster

    free = np.flatnonzero(train.person < 0)
    named = np.flatnonzero(train.person >= 0)
    fs = FaceSet(free, e[free], train.photo[free])
    people = People(e[named], train.person[named], train.photo[named])
    plan = recluster(fs, people, set(), thr, distance, spacing=True)
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
    """What a measurement depends on: a finished round of the same faces, measured the same
    way, can be kept."""
    import hashlib

    h = hashlib.sha256(b"measured the library's way")  # rounds of the earlier way are not
    h.update(np.ascontiguousarray(faces.emb, np.float32).tobytes())
    h.update(faces.person.astype(np.int64).tobytes() + faces.photo.astype(np.int64).tobytes())
    return h.hexdigest()


def measure(faces: Faces, distance: str, model_thr: float, *, fraction: float = 0.3,
            rounds: int = ROUNDS, seed: int = 0, steps: int = STEPS, keep: float = KEEP,
            far: float = 1.0, done: list | None = None, on_round=None) -> dict:  # fmt: skip
    """Before/after figures on held-back faces, averaged over `rounds` random hold-outs,
    the library's rules at the model's threshold `model_thr` both ways: KEY_before and
    KEY_after for KEYS, and how many faces each round held back. `done`: rounds finished
    before (a resumed job); on_round(round, rounds, finished rounds)."""
    enough(faces.person)
    runs = [tuple(r) for r in (done or [])][:rounds]
    for r in range(len(runs), rounds):
        train, held, strangers = holdout(faces, fraction, np.random.default_rng(seed + r))
        adapter = learn(train, distance, seed + r, steps, keep=keep, far=far)
        plain, adapted = _threshold(faces.emb, train, distance, model_thr), adapter.apply(faces.emb)
        thr = _threshold(adapted, train, distance, model_thr)
        before = _figures(faces.emb, faces, train, held, strangers, distance, plain, plain)
        after = _figures(adapted, faces, train, held, strangers, distance, thr, plain)
        runs.append((before, after, len(held), len(strangers)))
        if on_round is not None:
            on_round(r + 1, rounds, runs)
    out = {}
    for k in KEYS:
        for i, when in enumerate(("before", "after")):
            v = [run[i][k] for run in runs]
            out[f"{k}_{when}"] = None if None in v else round(float(np.mean(v)), 4)
    out |= {"held_back_faces": runs[0][2], "stranger_faces": runs[0][3], "rounds": rounds}
    return out | {"verdict": verdict(out), "helps": helps(out)}


# (figure, what it is for the owner, +1: higher is better, -1: lower is)
FIGURES = (("identify_accuracy", "naming your people", 1), ("bcubed_f", "the stacks", 1),
           ("stranger_false_name_rate", "strangers", -1))  # fmt: skip
BETTER, WORSE = 0.01, 0.005  # a gain counts from a point; a loss from half a point


def _changes(r: dict) -> tuple[list[str], list[str]]:
    """(the figures better after than before, those worse), in words."""
    better, worse = [], []
    for key, what, sign in FIGURES:
        b, a = r[f"{key}_before"], r[f"{key}_after"]
        if b is None or a is None:
            continue
        gain = sign * (a - b)
        if gain >= BETTER:
            better.append(what + (" (named less often)" if sign < 0 else ""))
        elif gain <= -WORSE:
            worse.append(what + (" (named more often)" if sign < 0 else ""))
    return better, worse


def helps(r: dict) -> bool:
    """Whether the adapter is worth switching on: better on a figure, worse on none."""
    better, worse = _changes(r)
    return bool(better) and not worse


def worse(r: dict) -> bool:
    """Whether the adapter made a figure worse (so kept off: measured worse, not merely
    no better)."""
    return bool(_changes(r)[1])


def verdict(r: dict) -> str:
    """What the measurement says, in words (a point is 0.01)."""
    better, worse = _changes(r)
    if better and worse:
        return f"mixed: better for {', '.join(better)}; worse for {', '.join(worse)}"
    if worse:
        return "worse for " + ", ".join(worse)
    if better:
        same = r["stranger_false_name_rate_before"] is not None and not any(
            w.startswith("strangers") for w in better)  # fmt: skip
        return "better for " + ", ".join(better) + ("; no worse for strangers" if same else "")
    return "no clear change on the held-back faces"
