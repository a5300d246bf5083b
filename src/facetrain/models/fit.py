"""Whether a set of tensors fits a model, said in words before torch is asked to load it.

Three places load weights that come from outside the model at hand: a run initialised from
another (`init_from`), a model file opened for use, a checkpoint imported from another
toolkit. Each asks this one question, so each says a misfit the same way: which tensors are
missing, which have no place, which are of another shape (torch's own error is a page of
every key).
"""

from __future__ import annotations

from collections.abc import Mapping


def misfit(own: Mapping, weights: Mapping, *, extra_ok: bool = False) -> str | None:
    """What keeps `weights` from loading into a model whose state dict is `own`, in one line
    (None when they fit). `extra_ok`: tensors with no place in the model are let pass."""
    missing = sorted(set(own) - set(weights))
    extra = [] if extra_ok else sorted(set(weights) - set(own))
    if missing or extra:
        said = [f"missing {len(missing)} (e.g. {missing[0]})"] if missing else []
        said += [f"unexpected {len(extra)} (e.g. {extra[0]})"] if extra else []
        return "; ".join(said)
    other = [
        f"{k} is {list(weights[k].shape)} there, {list(v.shape)} here"
        for k, v in own.items()
        if tuple(weights[k].shape) != tuple(v.shape)
    ]
    if other:
        return "; ".join(other[:2]) + (f" (and {len(other) - 2} more)" if len(other) > 2 else "")
    return None
