"""The commands the README and docs/ show are commands facetrain has: every subcommand,
flag and `--set` key they name exists, so a reader who copies one is not told "No such
option" by a renamed flag the docs kept; and every file of the project they point to
(a bench script, a recipe, a module) is there."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer

from facetrain.cli import app
from facetrain.train.config import settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets(text: str) -> list[tuple[int, str]]:
    """(line number, code): each line of a fenced block (a line ending in a backslash
    joined to the next) and each inline `code` span of the prose."""
    out, fenced, held = [], False, ""
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, held = not fenced, ""
        elif fenced and line.rstrip().endswith("\\"):
            held += line.rstrip()[:-1] + " "
        elif fenced:
            out.append((n, held + line))
            held = ""
        else:
            out += [(n, span) for span in re.findall(r"`([^`]+)`", line)]
    return out


def invocations(code: str) -> list[list[str]]:
    """The arguments of each `facetrain ...` (or `-m facetrain ...`) a line of code runs."""
    found = []
    for part in re.split(r"&&|\|\||[|;]", code):
        m = re.search(r"(?:^|\s|/)facetrain\s+(.*)", re.split(r"(?:^|\s)#", part)[0])
        if m:
            try:
                found.append(shlex.split(m.group(1)))
            except ValueError:  # an unclosed quote in prose-like code: take the words
                found.append(m.group(1).split())
    return found


def problems(args: list[str], root, keys: set[str]) -> list[str]:
    """What of one invocation facetrain does not have."""
    cmd, said = root, ["facetrain"]
    while args and hasattr(cmd, "commands") and args[0] in cmd.commands:
        cmd = cmd.commands[args[0]]
        said.append(args.pop(0))
    if hasattr(cmd, "commands"):  # a group: a word after it must be one of its commands
        word = args[0] if args else ""
        unknown = re.fullmatch(r"[a-z][a-z-]*", word)
        return [f"{' '.join(said)}: no command {word!r}"] if unknown else []
    flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    wrong = [a.split("=")[0] for a in args if a.startswith("--") and a != "--"]
    out = [f"{' '.join(said)}: no option {f}" for f in wrong if f not in flags]
    sets = [b for a, b in zip(args, args[1:]) if a == "--set"]
    sets += [a.split("=", 1)[1] for a in args if a.startswith("--set=")]
    named = [s.split("=")[0] for s in sets]  # KEY=VALUE; a placeholder (KEY) is no key
    return out + [f"{' '.join(said)}: no setting {k!r}" for k in named
                  if k not in keys and k.islower()]  # fmt: skip


def test_every_command_the_docs_show_exists():
    root = typer.main.get_command(app)
    keys = {row[0] for row in settings()}
    checked, wrong = 0, []
    for doc in DOCS:
        for n, code in snippets(doc.read_text(encoding="utf-8")):
            for args in invocations(code):
                checked += 1
                wrong += [f"{doc.name}:{n}: {p}" for p in problems(args, root, keys)]
    assert checked >= 100, checked  # the docs show that many: the reader really was read
    assert not wrong, "\n".join(wrong)


def test_a_renamed_flag_or_command_is_caught():
    """The check itself: what facetrain does not have is named, what it has is not."""
    root = typer.main.get_command(app)
    keys = {row[0] for row in settings()}
    (code,) = [c for _, c in snippets("x\n```bash\nfacetrain split A B \\\n  --by-id\n```\n")]
    assert problems(invocations(code)[0], root, keys) == ["facetrain split: no option --by-id"]
    assert problems(["library", "scann"], root, keys) == ["facetrain library: no command 'scann'"]
    assert invocations("# facetrain list v1: a file's first line") == []
    assert problems(["train", "--set", "lrr=0.1"], root, keys) == [
        "facetrain train: no setting 'lrr'"
    ]
    assert problems(["train", "--data", "D", "--set", "lr=0.1"], root, keys) == []
    assert invocations("torchrun --nproc_per_node=8 -m facetrain train --data P") == [
        ["train", "--data", "P"]
    ]


def test_every_file_the_docs_point_to_is_there():
    pattern = r"\b(?:bench|recipes|src|tests|docs|\.ci)/[\w./*-]*[\w*]"
    named = {p for doc in DOCS for p in re.findall(pattern, doc.read_text(encoding="utf-8"))}
    assert len(named) >= 50, len(named)

    def there(p: str) -> bool:  # a glob matches; `module.name` is module.py
        return any(ROOT.glob(p)) or (ROOT / (p.split(".")[0] + ".py")).is_file()

    assert [p for p in sorted(named) if not there(p)] == []


def test_every_make_target_the_docs_show_is_in_the_makefile():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    shown = {
        t
        for doc in DOCS
        for _, code in snippets(doc.read_text(encoding="utf-8"))
        for t in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", code)
    }
    assert {"demo", "test"} <= shown and shown <= targets, shown - targets


def facetrain_names(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of each `from facetrain… import name` in a file, anywhere in
    it (a script imports inside its functions what only one measurement needs)."""
    import ast

    return [(node.lineno, node.module, a.name)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.level == 0
            and (node.module or "").startswith("facetrain") for a in node.names]  # fmt: skip


def missing_names(paths: list[Path]) -> list[str]:
    import importlib.util

    out = []
    for path in paths:
        for line, module, name in facetrain_names(path):
            try:
                found = hasattr(importlib.import_module(module), name) or bool(
                    importlib.util.find_spec(f"{module}.{name}")
                )
            except ImportError:
                found = False
            if not found:
                out.append(f"{path.name}:{line}: {module}.{name}")
    return out


def test_every_bench_script_imports_what_facetrain_has(tmp_path):
    """A bench script is run by hand, seldom, and no test runs it: a function renamed or
    moved by a refactor broke one in silence until someone measured again. Every name a
    script imports from facetrain exists (the check finds a renamed one)."""
    scripts = sorted((ROOT / "bench").glob("*.py"))
    assert len(scripts) > 30
    assert missing_names(scripts) == []
    renamed = tmp_path / "renamed.py"
    renamed.write_text("def f():\n    from facetrain.atomic import write_texts, write_text\n")
    assert missing_names([renamed]) == ["renamed.py:2: facetrain.atomic.write_texts"]
