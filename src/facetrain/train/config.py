"""A run's settings resolved from where they come from, and checked before anything is written.

The settings themselves, in their groups, are `settings.py`'s. `resolve()` merges, in this
order, a config file (TOML, or a run's config.json), the flags
given on the command line, the cloud platforms' folders and `--set KEY=VALUE`; every value
is checked for its type and every choice (model, loss, miner, optimizer, schedule,
normalisation, distance, flip, amp, device) against what exists, with the allowed values
in the error. A run saves the result as `RUN/config.json` with the code revision.
`settings()` lists every setting with its type, default and meaning (`train --list-settings`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from facetrain import foreign
from facetrain.train.settings import (  # noqa: F401 (ConfigError, TrainConfig: read from here too)
    GROUPS,
    KEYS,
    READ_ONLY_WITH,
    ConfigError,
    TrainConfig,
    interval_said,
    key_of,
    kind_of,
    parse_text,
    typed,
    unknown_setting,
)


def load_config_file(path: str | os.PathLike, _seen: tuple = (),
                     problems: list[str] | None = None) -> dict:  # fmt: skip
    """A TOML or JSON file of settings, each checked for its name and type. `base =
    "other.toml"` (relative to the file) starts from another recipe: a file states only
    what it changes. `problems`: where to add the settings of a wrong name or type (left
    out), so that the run names them with every other mistake; else they are refused."""
    p = Path(path)
    if p.resolve() in _seen:
        raise ConfigError(f"{p}: its `base` recipes form a cycle")
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8")
        d = tomllib.loads(text) if p.suffix == ".toml" else foreign.loads(text)
    except (OSError, ValueError) as e:  # TOML's and JSON's errors, not UTF-8 text
        raise ConfigError(f"{p}: not a readable TOML/JSON settings file ({e})") from None
    except RecursionError:  # TOML arrays in arrays, thousands deep
        raise ConfigError(
            f"{p}: not a readable TOML/JSON settings file (nested too deep)"
        ) from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a table of settings")
    base = d.pop("base", None)
    if isinstance(d.get("data"), str):
        d["data"] = [d["data"]]
    d = _typed(d, str(p), problems)
    if base is None:
        return d
    if not isinstance(base, str):
        raise ConfigError(f"{p}: base = {base!r}: expected the path of another recipe")
    return load_config_file(p.parent / base, (*_seen, p.resolve()), problems) | d


def _typed(d: dict, where: str, problems: list[str] | None) -> dict:
    """A file's settings of a known name and the right type; the others refused, or added
    to `problems` when it is given."""
    d, bad = typed(d, where)
    if problems is None and bad:
        raise ConfigError(*bad)
    if problems is not None:
        problems += bad
    return d


def code_revision() -> str:
    """git commit of the facetrain source (with '-dirty'), or the package version."""
    src = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from facetrain import __version__

        return f"facetrain {__version__}"


@dataclass
class Platform:
    """The cloud training platforms' folders (`--data-dir`, `--output-dir`, `--log-dir`,
    `--num-gpus`): relative data and output paths are taken under them."""

    data_dir: str | None = None
    output_dir: str | None = None
    log_dir: str | None = None
    num_gpus: int | None = None


def _apply_platform(values: dict, p: Platform) -> None:
    if p.data_dir is not None:
        roots = values.get("data") or [""]
        joined = [r if os.path.isabs(r) else os.path.join(p.data_dir, r) for r in roots]
        values["data"] = [r.rstrip("/") for r in joined]
    if p.output_dir is not None:
        o = values.get("out", "run")
        values["out"] = o if os.path.isabs(o) else os.path.join(p.output_dir, o)
    if p.log_dir is not None:
        values["log_dir"] = str(p.log_dir)
    if p.num_gpus is not None:
        values["device"] = "cuda" if p.num_gpus > 0 else "cpu"


def resolve(
    file: str | os.PathLike | None = None,
    flags: dict | None = None,
    platform: Platform | None = None,
    sets: list[str] | None = None,
) -> TrainConfig:
    """The run's settings from a file, flags, platform folders and KEY=VALUE overrides (in
    that order of precedence, last wins), checked completely before anything is written:
    every mistake of every source named in one refusal (a value of a wrong name or type
    is left out of the rules the others are checked by)."""
    problems: list[str] = []
    values = load_config_file(file, problems=problems) if file is not None else {}
    given, bad = typed({k: v for k, v in (flags or {}).items() if v is not None}, "flag")
    values |= given
    problems += bad
    _apply_platform(values, platform or Platform())
    for item in sets or []:
        try:
            key, value = _set_item(item, given, values)
        except ConfigError as e:
            problems += e.problems
            continue
        values[key] = value
    _as_init_from(values)
    cfg = TrainConfig.of(**values)
    try:
        cfg.validate()
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise ConfigError(*problems)
    _check_device(cfg.platform.device, (platform or Platform()).num_gpus)
    return cfg


def _set_item(item: str, given: dict, values: dict) -> tuple[str, object]:
    """(setting, value) of one `--set KEY=VALUE`, or a ConfigError saying what is wrong."""
    key, sep, text = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    if key not in KEYS:
        raise ConfigError(f"--set {item!r}: {unknown_setting(key)}")
    value = parse_text(key, text)
    if key in given and value != values[key]:
        raise ConfigError(f"--set {item!r} contradicts --{key.replace('_', '-')} "
                          f"{values[key]!r}: give it once")  # fmt: skip
    return key, value


def _as_init_from(values: dict) -> None:
    """Fine-tuning feeds a model as it was trained: its network and input as `init_from`'s
    record (or, before it has one, its run's config) says them (architecture, embedding
    size, input size, normalisation), where the run's settings do not (each was an error to
    mend in turn; one given that differs still is, named by `check_init_from`)."""
    if not values.get("init_from"):
        return
    from facetrain.train.build import init_settings

    for key, value in init_settings(values["init_from"]).items():
        values.setdefault(key, value)


def _check_device(device: str, num_gpus: int | None) -> None:
    """A CUDA device asked for must exist here (and as many as --num-gpus)."""
    from facetrain.devices import check_device

    check_device(device, "device =")
    if not device.startswith("cuda"):
        return
    import torch

    if num_gpus and num_gpus > torch.cuda.device_count():
        raise ConfigError(f"--num-gpus {num_gpus}: this machine has {torch.cuda.device_count()}")


def settings() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of every setting, group by group, with its choices
    where it has some, and the choices of another that it is read with (`READ_ONLY_WITH`)."""
    defaults = TrainConfig()
    choices = {k: c for g in GROUPS for k, c in _flat_choices(getattr(defaults, g)).items()}
    rows = []
    for name, (_, _, f) in KEYS.items():
        meaning = f.metadata["help"]
        if name in choices:
            meaning += f" ({' | '.join(choices[name])})"
        if "within" in f.metadata:
            meaning += f"; {interval_said(f.metadata['within'])}"
        if name in READ_ONLY_WITH:
            chooser, under = READ_ONLY_WITH[name]
            meaning += f"; read with {chooser} {', '.join(under)}"
        rows.append((name, kind_of(name), json.dumps(defaults.get(name)), meaning))
    return rows


def _flat_choices(group) -> dict[str, tuple]:
    return {key_of(group, name): allowed for name, allowed in group.choices().items()}
