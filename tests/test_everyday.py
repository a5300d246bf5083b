"""Everyday use (issue 31): the version, a default library from the environment, and
messages printed whole."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import facetrain
from facetrain.cli import app
from helpers import embedded_library

runner = CliRunner()
glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def _printed_by(probe: str, how: str, env: dict | None = None) -> int:
    """The number a probe script prints when run with `how` in a fresh process (malloc's
    settings are a process's)."""
    out = subprocess.run([sys.executable, "-c", probe, how], capture_output=True, text=True,
                         check=True, env=os.environ | (env or {}))  # fmt: skip
    return int(out.stdout)


def test_version_names_the_revision_and_what_runs_it():
    """`--version` said "facetrain 0.1.0" for every commit; a bug report needs the code's
    revision and what ran it, read without importing torch."""
    from importlib import metadata

    from facetrain.devices import cpu_name
    from facetrain.train.config import code_revision

    r = runner.invoke(app, ["--version"])
    first, runs = r.output.splitlines()
    rev = code_revision()
    assert r.exit_code == 0 and first.startswith(f"facetrain {facetrain.__version__}")
    assert rev.startswith("facetrain") or first.endswith(f" ({rev})")
    assert f"torch {metadata.version('torch')}, " in runs and runs.endswith(cpu_name())
    probe = ("import sys\nfrom facetrain.cli import app\ntry:\n    app(['--version'])\n"
             "except SystemExit:\n    print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.splitlines() == [*r.output.splitlines(), "False"], out.stderr


def test_listings_answer_on_standard_output(tmp_path):
    """What a listing command answers goes to standard output, so `| less`, `| grep` and
    `> file` get it; only messages go to standard error."""
    from helpers import make_faces

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((8, 16)).astype(np.float32)
    embedded_library(tmp_path / "lib.db", emb / np.linalg.norm(emb, axis=1, keepdims=True)).close()
    faces = make_faces(tmp_path / "faces", ids=3, per=2, size=32)
    for args, answer in ((["library", "people", "--db", tmp_path / "lib.db"], "quality gate"),
                         (["stats", faces], "images per identity"),
                         (["train", "--list-settings"], "--set KEY=VALUE")):  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "facetrain", *map(str, args)],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0 and answer in r.stdout and r.stderr == "", (args, r.stderr)


def test_the_library_from_the_environment_and_cluster_s_message_whole(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((8, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    embedded_library(tmp_path / "lib.db", emb).close()
    monkeypatch.setenv("FACETRAIN_LIBRARY", str(tmp_path / "lib.db"))
    r = runner.invoke(app, ["library", "cluster"])  # no --db: $FACETRAIN_LIBRARY
    assert r.exit_code == 0, r.output
    from facetrain.library.library import Library

    with Library(tmp_path / "lib.db") as lib:
        _, thr, why = lib.cluster()
    assert r.output.strip().endswith(f"at threshold {thr:.3f}: {why}"), r.output
    r = runner.invoke(app, ["library", "people"])
    assert r.exit_code == 0 and "stacks" in r.output


def test_help_text_in_brackets_is_printed_not_eaten():
    """`--threshold` had empty help and `--model` read "The model .": rich ate `[...]`."""
    r = runner.invoke(app, ["compare", "--help"])
    assert "Same person below this [the model's]." in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["library", "cluster", "--help"])
    assert "[the model's calibrated one]" in r.output, r.output
    assert "[the one it was made with; new: the default]" in " ".join(r.output.split())


def _commands(group, path=()):
    """Every command's argv path, sub-groups included."""
    import typer

    cmd = typer.main.get_command(app) if group is None else group
    for name, sub in getattr(cmd, "commands", {}).items():
        yield (*path, name)
        yield from _commands(sub, (*path, name))


def test_every_help_reads_in_plain_words():
    """No typer `<list[str]>` / `<bool>` noise in any command's help, arguments named by
    their name (no "{photos}"), and train's options show the defaults it falls back on."""
    import re

    paths = list(_commands(None))
    assert len(paths) > 30 and ("library", "scan") in paths
    for path in paths:
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert not re.search(r"<[a-z\[\]|, ]+>|\{\w+\}", r.output), (path, r.output)
    r = runner.invoke(app, ["library", "identify", "--help"])
    assert "PHOTOS..." in r.output and "--threshold NUMBER" in r.output, r.output
    help_ = " ".join(runner.invoke(app, ["train", "--help"]).output.split())
    from facetrain.train.config import TrainConfig

    d = TrainConfig()
    for flag, value in [("--epochs INTEGER", d.optim.epochs),
                        ("--batch-size INTEGER", d.data.batch_size),
                        ("--lr NUMBER", d.optim.lr), ("--model TEXT", d.model.arch)]:  # fmt: skip
        assert re.search(rf"{flag} .*?\[default: {re.escape(str(value))}\]", help_), flag


def test_threads_for_inference_leave_busy_cores_alone_and_are_settable(monkeypatch, tmp_path):
    """A command using a model runs on the cores other jobs are not keeping busy now
    (torch's one thread a core spun against other jobs: a warm pair 2.4–5.3 s against
    0.42 s on one thread), not on what the last minute's load average leaves (the command
    run just before); it looks once a process; FACETRAIN_THREADS sets the count; a bad value
    is named; with no /proc and no affinity (macOS) it still answers."""
    from facetrain import devices
    from facetrain.devices import inference_threads
    from facetrain.errors import FacetrainError

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("FACETRAIN_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (float(cores), 0.0, 0.0))
    stat = tmp_path / "stat"
    monkeypatch.setattr(devices, "PROC_STAT", str(stat))

    def threads_when(running: int) -> int:
        stat.write_text(f"cpu  10 0 5 900\nprocs_running {running}\nprocs_blocked 0\n")
        devices._threads_free.cache_clear()
        return inference_threads()

    try:
        assert threads_when(1 + cores) == 1  # every core busy: one thread
        assert threads_when(1) == cores  # only this command: a loaded last minute is past
        stat.write_text("procs_running 99\n")
        assert inference_threads() == cores  # looked at once
        monkeypatch.setattr(devices, "PROC_STAT", str(tmp_path / "no-proc"))
        monkeypatch.delattr(os, "sched_getaffinity")
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0.0, 0.0))
        devices._threads_free.cache_clear()
        assert (inference_threads(), devices.cores_to_use()) == (1, 4)
    finally:
        devices._threads_free.cache_clear()
    monkeypatch.setenv("FACETRAIN_THREADS", "3")
    assert inference_threads() == 3
    monkeypatch.setenv("FACETRAIN_THREADS", "zero")
    with pytest.raises(FacetrainError, match="FACETRAIN_THREADS='zero'"):
        inference_threads()
    monkeypatch.undo()
    probe = ("import facetrain.cli.common as c; g = c.app; "
             "import typer; typer.main.get_command(g).get_command(None, sys.argv[1]); "
             "import torch; print(torch.get_num_threads())")  # fmt: skip
    env = os.environ | {"FACETRAIN_THREADS": "1", "OMP_NUM_THREADS": ""}
    env.pop("OMP_NUM_THREADS")
    got = {cmd: subprocess.run([sys.executable, "-c", "import sys\n" + probe, cmd], env=env,
                               capture_output=True, text=True).stdout.strip()
           for cmd in ("compare", "train")}  # fmt: skip
    assert got["compare"] == "1" and got["train"] == str(cores), got


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="no /proc/stat (not Linux)")
def test_cores_busy_counts_the_jobs_running_now():
    """Two busy loops started this instant are two busy cores, whatever the load average."""
    from facetrain.devices import cores_busy

    spin = "print(flush=True)\nwhile True: pass"
    loops = [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    try:
        for p in loops:
            p.stdout.readline()
        assert cores_busy() >= 2
    finally:
        for p in loops:
            p.kill()
            p.wait()


def test_images_are_read_ahead_by_as_many_threads_as_the_model_runs_on(monkeypatch):
    """`--workers` 0 of embed and eval: the model's threads (FACETRAIN_THREADS here), else
    the number given; a negative one is named."""
    from facetrain.inference.sources import reading_threads

    monkeypatch.setenv("FACETRAIN_THREADS", "3")
    assert (reading_threads(0), reading_threads(5)) == (3, 5)
    with pytest.raises(ValueError, match="--workers -1: 1 or more"):
        reading_threads(-1)


def test_a_processor_is_named_with_its_family_and_model(monkeypatch, tmp_path):
    """Benchmarks and run records name the processor. 'AMD EPYC' alone names several
    generations (one with AVX-512 kernels, one without), so its family and model are
    said; a processor Linux gives no name (ARM) is the machine's kind; no file, the same."""
    import platform

    from facetrain import devices

    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(devices, "CPUINFO", str(info))
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                    "model\t\t: 1\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\n"
                    "model name\t: other\n")  # fmt: skip
    assert devices.cpu_name() == "AMD EPYC (family 25, model 1)"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n")
    kind = platform.processor() or platform.machine()
    assert devices.cpu_name() == kind
    info.unlink()
    assert devices.cpu_name() == kind


def test_a_container_s_quotas_bound_threads_processes_and_memory(monkeypatch, tmp_path):
    """In a container held to 1.5 CPUs and 3 GB (cgroup v2), on a host of 96 busy cores:
    two threads and two scan processes, not 96 nor one; memory is what the limit leaves
    (less the page cache it may drop), so a scan starts no worker it cannot hold. cgroup
    v1's files are read as well, and "no limit" in either is none."""
    from facetrain import devices
    from facetrain.inference.processes import workers_for

    cg, stat = tmp_path / "cgroup", tmp_path / "stat"
    cg.mkdir()
    stat.write_text("procs_running 80\n")  # the host's tasks: not the container's
    monkeypatch.setattr(devices, "CGROUP", str(cg))
    monkeypatch.setattr(devices, "PROC_STAT", str(stat))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(96)))
    monkeypatch.delenv("FACETRAIN_THREADS", raising=False)
    assert (devices.cpu_quota(), devices.memory_left(), devices.cores_to_use()) == (None, None, 96)
    assert devices.cores_free() == 96 - 79  # no quota: the host's busy cores count (less this)
    (cg / "cpu.max").write_text("150000 100000\n")
    (cg / "memory.max").write_text(f"{3 << 30}\n")
    (cg / "memory.current").write_text(f"{1 << 30}\n")
    assert (devices.cpu_quota(), devices.cores_to_use(), devices.cores_free()) == (2, 2, 2)
    assert devices.within_quota(8) == 2 and devices.memory_available() <= 2 << 30
    assert workers_for(0, "cpu", 1000) == 2
    (cg / "memory.current").write_text(f"{(3 << 30) - (500 << 20)}\n")  # 500 MB left
    assert workers_for(0, "cpu", 1000) == 1
    (cg / "memory.stat").write_text(f"anon 1000\ninactive_file {2 << 30}\nactive_file 7\n")
    assert devices.memory_left() == (500 << 20) + (2 << 30)  # page cache it may drop
    assert workers_for(0, "cpu", 1000) == 2
    (cg / "cpu.max").write_text("max 100000\n")
    (cg / "memory.max").write_text("max\n")
    assert (devices.cpu_quota(), devices.memory_left()) == (None, None)
    for f in ("cpu.max", "memory.max", "memory.current", "memory.stat"):
        (cg / f).unlink()
    (cg / "cpu").mkdir()
    (cg / "memory").mkdir()
    (cg / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (cg / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (cg / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (cg / "memory" / "memory.usage_in_bytes").write_text(f"{1 << 30}\n")
    assert (devices.cpu_quota(), devices.memory_left(), devices.cores_to_use()) == (4, None, 4)
    (cg / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (cg / "memory" / "memory.limit_in_bytes").write_text(f"{2 << 30}\n")
    (cg / "memory" / "memory.stat").write_text("inactive_file 5\ntotal_inactive_file 100\n")
    assert (devices.cpu_quota(), devices.memory_left()) == (None, (1 << 30) + 100)


def test_each_command_is_registered_by_the_stage_the_lazy_table_names():
    """`facetrain CMD` imports only CMD's stage module (`cli.COMMANDS`): a command missing
    from the table, or under the wrong stage, would vanish when run."""
    from facetrain import cli

    app = cli.app  # every stage
    found = {(c.name or c.callback.__name__.replace("_", "-")): c.callback.__module__
             for c in app.registered_commands}  # fmt: skip
    found |= {g.name: g.typer_instance.registered_commands[0].callback.__module__
              for g in app.registered_groups}  # fmt: skip
    assert {k: v.removeprefix("facetrain.cli.") for k, v in found.items()} == cli.COMMANDS
    code = ("import sys; from facetrain.cli import load_stages; load_stages(['compare', 'a']); "
            "print(sorted(m for m in sys.modules if m.startswith('facetrain.cli.')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "facetrain.cli.use" in out.stdout and "facetrain.cli.train" not in out.stdout


@glibc_only
def test_a_worker_keeps_freed_buffers_for_the_next_photo():
    """`keep_freed_memory`: the detector run again on the same photo maps its buffers
    afresh each time while glibc's mmap threshold is at its starting 128 kB (thousands of
    page faults a photo; glibc raises the threshold only after some frees, so a process
    left to itself may or may not), and reuses them once kept, in every process. Counted
    in fresh processes: the median of six photos each."""
    probe = (
        "import resource, statistics, sys, numpy as np\n"
        "from facetrain.align.detector import MTCNN\n"
        "from facetrain.devices import keep_freed_memory\n"
        "if sys.argv[1] == 'kept': keep_freed_memory()\n"
        "img = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)\n"
        "mtcnn = MTCNN()\n"
        "for _ in range(3): mtcnn.detect([img])  # the heap grown to its working size\n"
        "faults = []\n"
        "for _ in range(6):\n"
        "    r = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    mtcnn.detect([img])\n"
        "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r)\n"
        "print(int(statistics.median(faults)))\n"
    )

    start = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)}  # glibc's first threshold, held
    default = _printed_by(probe, "default", start)
    kept = [_printed_by(probe, "kept", start)] + [_printed_by(probe, "kept") for _ in range(2)]
    assert default > 3000 and max(kept) < 300, (default, kept)


@glibc_only
def test_embedding_on_a_cpu_keeps_its_activations_for_the_next_batch():
    """`feed.embed` on a CPU keeps the memory a forward pass frees: with glibc's default
    each batch's activations were handed back and faulted in again, zeroed by the kernel
    (half of the forward pass's time: bench/cpu_memory.py). Counted in fresh processes:
    the median faults of five embeddings of 16 faces by an untrained mobilefacenet, after
    a first. Now and then one of torch's threads faults a few thousand pages anew, on a
    busy machine in most of the five (6,273 once, beside another test): kept is the
    fewest of three processes; with the memory handed back each faults about 30,000 (16
    faces, half the time of 32). The default is measured with glibc's first threshold
    held, once (every batch then faults alike, about 300,000): left to itself, glibc
    raised it as large blocks were freed and kept the memory itself once (2 faults)."""
    probe = (
        "import resource, statistics, sys, numpy as np\n"
        "from facetrain import devices\n"
        "from facetrain.inference import feed\n"
        "from facetrain.inference.sources import Arrays\n"
        "from facetrain.models import create_model\n"
        "if sys.argv[1] == 'default': devices.keep_freed_memory = lambda limit=0: None\n"
        "net = create_model('mobilefacenet', 128)\n"
        "faces = list(np.random.default_rng(0).integers(0, 256, (16, 112, 112, 3), np.uint8))\n"
        "def faults():\n"
        "    r = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    feed.embed(net, Arrays(faces), size=112, normalize='fixed')\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r\n"
        "faults()  # the heap grown to its working size\n"
        "runs = 1 if sys.argv[1] == 'default' else 5  # held, every batch faults alike\n"
        "print(int(statistics.median(faults() for _ in range(runs))))\n"
    )

    start = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
    default = _printed_by(probe, "default", start)
    kept = [_printed_by(probe, "kept", start)] + [_printed_by(probe, "kept") for _ in range(2)]
    assert default > 10_000 and min(kept) < 1_000, (default, kept)


def test_naming_a_stack_as_it_is_named_leaves_nothing_to_undo(tmp_path):
    """`undo` after naming a stack twice takes the name off: the second naming, which
    changed nothing, was not an action. Naming again after a face joined confirms it."""
    from facetrain.library import store

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    with embedded_library(tmp_path / "lib.db", emb) as lib:
        with store.transaction(lib.con):
            pid = store.new_person(lib.con)
            store.assign(lib.con, [(pid, 1), (pid, 2)], confirmed=0)
        lib.name(str(pid), "Ann")
        assert "nothing to do" in lib.name(str(pid), "Ann")
        lib.undo()
        assert lib.people()[0]["name"] is None
        lib.name(str(pid), "Ann")
        with store.transaction(lib.con):
            store.assign(lib.con, [(pid, 3)], confirmed=0)  # a face joined since
        assert "is now 'Ann' (3 faces)" in lib.name(str(pid), "Ann")
        assert lib.people()[0]["confirmed"] == 3


@pytest.mark.skipif(__import__("torch").backends.mps.is_available(), reason="this machine has MPS")
def test_a_device_this_machine_lacks_is_named_before_any_work(tmp_path):
    """`--device mps` on a machine without Apple's GPU was let through the device check and
    ended in PyTorch's traceback halfway through `embed`; every device kind is now checked
    against the machine, by the commands that use a model and by training alike."""
    from helpers import make_faces

    faces = make_faces(tmp_path / "faces", ids=3, per=2, size=32)
    embed = ["embed", "--device", "mps", "--out", tmp_path / "e.npz", faces]
    train = ["train", "--device", "mps", "--data", faces, "--out", tmp_path / "run"]
    align = ["align", "--device", "mps", faces, tmp_path / "run"]
    for args in (embed, train, align):
        r = runner.invoke(app, list(map(str, args)))
        said = "mps: no Apple GPU (MPS) is available here"
        assert r.exit_code == 2 and said in r.output, (args, r.output)
        assert not (tmp_path / "e.npz").exists() and not (tmp_path / "run").exists()


def test_json_dash_is_the_json_alone_on_stdout_and_the_rest_on_stderr(tmp_path):
    """`--json -` wrote a file named `-` in the working folder, and `--json /dev/stdout`
    mixed the JSON with the lines printed for people: neither can be piped into `jq`. Now
    `-` puts the JSON alone on standard output and everything else on standard error."""
    from helpers import make_faces, make_model

    faces = make_faces(tmp_path / "faces", ids=2, per=1)
    a, b = sorted(faces.rglob("*.jpg"))
    model = make_model(tmp_path / "m.safetensors")
    env = os.environ | {"FACETRAIN_CACHE": str(tmp_path / "cache")}

    def run(*args) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "facetrain", *map(str, args), "--json", "-"]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=300)  # fmt: skip

    said = run("compare", model, a, b)
    assert said.returncode == 0, said.stderr
    pairs = json.loads(said.stdout)["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [(str(a), str(b))]
    verdict = "same" if pairs[0]["same"] else "different"
    assert f"{verdict}\t{pairs[0]['distance']:.4f}\t{a}\t{b}" in said.stderr
    stats = run("stats", faces)  # a table for people, printed on stdout without --json -
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["identities"] == 2 and "identities" in stats.stderr
    assert not (tmp_path / "-").exists()
    cmd = [sys.executable, "-m", "facetrain", "compare", str(model), str(a), str(b), "--json", "-"]
    closed = subprocess.run(["bash", "-c", 'exec "$@" >&-', "-", *cmd], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert closed.returncode == 2 and "standard output is closed" in closed.stderr, closed


def test_a_long_list_prints_its_first_lines_and_how_many_more(capsys):
    """`embed`, `eval`, `rewarp`, `library scan` and `forget-missing` each printed the first
    lines of a long list their own way, and `rewarp` and `forget-missing` said nothing of
    the rest. One helper prints the first 20 and how many were not printed."""
    from facetrain.cli.common import SHOWN, show_first

    lines = [f"skipped a{k}.jpg: no face" for k in range(SHOWN + 1)]
    show_first(lines, "more image", tail=" skipped", indent="  ")
    printed = capsys.readouterr().err.splitlines()
    assert printed == [f"  {x}" for x in lines[:SHOWN]] + ["  … and 1 more image skipped"]
    show_first(lines[:SHOWN] * 2, "more image", tail=" skipped")
    assert capsys.readouterr().err.splitlines()[SHOWN:] == ["… and 20 more images skipped"]
    show_first(lines[:SHOWN], "more image")
    assert capsys.readouterr().err.splitlines() == lines[:SHOWN]


def test_json_dash_gives_standard_output_back_when_the_command_ends(tmp_path, capfd):
    """A program that runs a command in its own process (`app([...])`) and prints after it:
    its prints went to standard error for good once `--json -` had lent stdout out."""
    from helpers import make_faces

    faces = make_faces(tmp_path / "faces", ids=2, per=1)
    stdout = sys.stdout
    app(["stats", str(faces), "--json", "-"], standalone_mode=False)
    assert sys.stdout is stdout
    print("printed after")
    out, err = capfd.readouterr()
    assert out.startswith("{") and json.loads(out.split("printed after")[0])["identities"] == 2
    assert out.endswith("printed after\n") and "identities" in err
