"""Several training recipes side by side on one GPU within a deadline, each then evaluated on
LFW's 6,000 pairs: what a lent GPU's few minutes can tell about recipes that take a CPU
hours (issue 17: which recipe, if any, reaches 93% on mini-train + more-train).

    PYTHONPATH=src python3 bench/gpu_recipes.py --data DIR --out OUT --deadline-s 420 \\
        recipes/a.toml recipes/b.toml@amp=bf16 ...

DIR holds mini-train, more-train and lfw (`bench/gpu_bundle.py FOLDER --train-sets` makes a
bundle small enough to travel). The two training roots are packed once; each recipe then
trains in its own process (`facetrain train --config RECIPE --set device=cuda
data_on_device=true`, plus what follows its `@`), all at once — small networks leave an
H100 mostly idle, so side by side costs little more than the longest alone. A run still
going at the deadline is stopped (one that has trained all its epochs first gets 90 s to
write its model); its last checkpoint stays in its folder (resumable) and it is reported
as unfinished. Each finished model is evaluated on the GPU and, where its
weights in half precision fit 16 MB, written to OUT (NAME.safetensors, a MODEL for
`facetrain eval`). OUT/gpu_recipes.json holds every figure, OUT/runs.zip each run's log,
metrics and settings; the last line is a table. A run is evaluated as soon as it ends, in a thread
of its own, while the others still train. Distillation recipes that name the same teacher share its
embeddings: computed once on the GPU (while the other recipes train) and copied into each
run folder, where `facetrain train` finds them done.

Without a GPU (or with --dry-run) the same path runs on the CPU at toy sizes: a few steps of
each recipe on generated faces, so that CI keeps the script working.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import torch

from facetrain.run_folder import read_metrics

HERE = Path(__file__).resolve().parent
MAX_BACK = 16_000_000  # bytes: the largest file a lent machine's OUT hands back


def parse_recipe(recipe: str) -> tuple[str, str, list[str]]:
    """RECIPE.toml[@k=v,k=v] as (path, run name, its own KEY=VALUE settings)."""
    path, _, more = recipe.partition("@")
    return path, Path(path).stem, [s for s in more.split(",") if s]


def launch(recipe: str, pack_dir: Path, work: Path, device: str, threads: int,
           extra: list[str]) -> tuple[str, subprocess.Popen, Path]:  # fmt: skip
    """`facetrain train` for one recipe (RECIPE[@k=v,k=v]) in its own process."""
    path, name, own = parse_recipe(recipe)
    sets = [f"device={device}", f"data_on_device={str(device != 'cpu').lower()}",
            "eval_pairs=", "eval_images=", f"threads={threads}", "checkpoint_minutes=2",
            "log_every=100", *extra, *own]  # fmt: skip
    cmd = [sys.executable, "-m", "facetrain", "train", "--config", path,
           "--data", str(pack_dir), "--out", str(work / name)]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    log = (work / f"{name}.log").open("w")
    env = os.environ | {"PYTHONUNBUFFERED": "1", "FACETRAIN_PROGRESS_EVERY": "60"}
    return name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), work / name


def teacher_of(recipe: str) -> str:
    """The teacher a distillation recipe (RECIPE[@k=v,...]) names; '' for any other."""
    from facetrain.train.config import resolve

    path, _, own = parse_recipe(recipe)
    cfg = resolve(path, sets=own)
    return cfg.objective.teacher if cfg.objective.loss == "distill" else ""


def share_teacher(spec: str, names: list[str], pack_dir: Path, work: Path, device: str) -> None:
    """The teacher's embeddings of the pack's training faces, computed once into the first
    run folder and copied into the others (the cache `facetrain train` resumes from)."""
    import shutil

    from facetrain.data.packed import PackedDataset
    from facetrain.train.teacher import teacher_embeddings

    first = work / names[0]
    teacher_embeddings(spec, PackedDataset(pack_dir, split="train"), first, device)
    for name in names[1:]:
        shutil.copytree(first / "teacher", work / name / "teacher", dirs_exist_ok=True)
    print(f"teacher {spec}: embedded at {time.monotonic() - START:.0f} s", flush=True)


def wait_all(runs: list, deadline: float, on_end=lambda name, end: None,
             grace_s: float = 90) -> dict[str, str]:  # fmt: skip
    """Each run's end: 'finished', 'failed (rc N)' or 'stopped at the deadline'. on_end runs
    in a thread of its own as each run ends, so an evaluation neither holds up the others'
    ends nor the deadline. At the deadline a run that has trained all its epochs (it is
    writing its model) gets grace_s more; the rest are stopped (their checkpoints stay)."""
    ends: dict[str, str] = {}
    threads: list[threading.Thread] = []
    last_report = 0.0

    def end(name: str, how: str) -> None:
        ends[name] = how
        print(f"{name}: {how} at {time.monotonic() - START:.0f} s", flush=True)
        threads.append(threading.Thread(target=on_end, args=(name, how)))
        threads[-1].start()

    while len(ends) < len(runs):
        for name, proc, _ in runs:
            if name not in ends and proc.poll() is not None:
                end(name, "finished" if proc.returncode == 0 else f"failed (rc {proc.returncode})")
        now = time.monotonic()
        for name, proc, folder in runs:
            if name in ends or now <= deadline:
                continue
            if now > deadline + grace_s or not _all_epochs_done(folder):
                proc.kill()
                proc.wait()
                end(name, "stopped at the deadline")
        if now - last_report > 30:
            last_report = now
            print(" | ".join(f"{n}: {_last_step(f)}" for n, _, f in runs), flush=True)
        time.sleep(1)
    for t in threads:
        t.join()
    return ends


def _all_epochs_done(folder: Path) -> bool:
    """The run logged the end of its last epoch (what is left: writing its model)."""
    try:
        epochs = json.loads((folder / "config.json").read_text())["epochs"]
        ends = [d for d in read_metrics(folder) if d.get("epoch_end")]
    except (OSError, ValueError, KeyError):
        return False
    return bool(ends) and ends[-1].get("epoch") == epochs - 1


def _last_step(folder: Path) -> str:
    """The newest logged epoch and step of a run ('-' before its first)."""
    if not (folder / "metrics.jsonl").exists():
        return "-"
    for d in reversed(read_metrics(folder)):
        if "step" in d and "loss" in d:
            return f"epoch {d['epoch']} step {d['step']} loss {d['loss']:.2f}"
    return "-"


def evaluate(name: str, folder: Path, lfw: Path | None, device: str, out: Path) -> dict:
    """LFW figures of a finished run; its weights in half precision to OUT when they fit."""
    from facetrain.evaluate.model_eval import evaluate_model
    from facetrain.inference.record import save_model
    from facetrain.inference.saved import load_model, open_model

    metrics = read_metrics(folder)
    seconds = sum(d.get("seconds", 0) for d in metrics if d.get("epoch_end"))
    row = {
        "recipe": name,
        "train_s": round(seconds, 1),
        "steps": metrics[-1].get("step"),
        "final_loss": next((d["loss"] for d in reversed(metrics) if d.get("epoch_end")), None),
    }
    net, pre = load_model(folder)
    path = save_model(out / f"{name}.safetensors", net.to(torch.float16), pre)
    if path.stat().st_size > MAX_BACK:
        path.unlink()  # too big to come back: the figures below are what is kept
    if lfw is not None:
        ev = evaluate_model(open_model(folder, device), [(str(lfw / "pairs.txt"), str(lfw))],
                            align="never", device=device)  # aligned crops: no detector  # fmt: skip
        r = next(iter(ev.results.values()))
        row |= {"lfw_accuracy": round(r["accuracy"], 4), "lfw_std": round(r["accuracy_std"], 4),
                "val_at_far_1e-3": round(r["val"], 4), "far": round(r["far"], 4),
                "auc": round(r["auc"], 4)}  # fmt: skip
    return row


def toy_data(work: Path) -> tuple[Path, list[str]]:
    """Generated faces (16 identities x 12) for the dry run, and settings that keep it short."""
    sys.path.insert(0, str(HERE))
    from gpu_check import tiny_pack

    return tiny_pack(work, "raw"), ["epochs=1", "epoch_size=2", "batch_size=16",
                                   "input_size=0", "warmup_epochs=0"]  # fmt: skip


def data_for(args, gpu: bool) -> tuple[Path, list[str], Path | None]:
    """The training pack (mini + more packed once; toy faces for a dry run), the settings
    every recipe gets, and LFW's folder (None: no evaluation)."""
    if not gpu:
        pack_dir, extra = toy_data(args.work)
        return pack_dir, extra + args.sets, None
    from facetrain.data.packed import pack

    pack_dir = args.work / "pack"
    if not (pack_dir / "meta.json").exists():
        pack([str(args.data / "mini-train"), str(args.data / "more-train")], pack_dir,
             progress=False)  # fmt: skip
    print(f"packed at {time.monotonic() - START:.0f} s", flush=True)
    return pack_dir, args.sets, args.data / "lfw"


def launch_all(recipes: list[str], pack_dir: Path, work: Path, device: str,
               extra: list[str]) -> list:  # fmt: skip
    """Every recipe in its own process: those without a teacher first; then, per teacher,
    its one pass (while the others train) and the recipes it teaches."""
    threads = max(1, (os.cpu_count() or 2) // len(recipes))
    teachers = {r: teacher_of(r) for r in recipes}
    runs = [launch(r, pack_dir, work, device, threads, extra) for r in recipes if not teachers[r]]
    for spec in sorted({t for t in teachers.values() if t}):
        taught = [r for r in recipes if teachers[r] == spec]
        share_teacher(spec, [parse_recipe(r)[1] for r in taught], pack_dir, work,
                      device)  # fmt: skip
        runs += [launch(r, pack_dir, work, device, threads, extra) for r in taught]
    return runs


def recorder(rows: dict, work: Path, out: Path, lfw: Path | None, device: str):
    """What to do as a run ends: evaluate it (if it wrote a model) and add its row to rows
    and to OUT/gpu_recipes.json; several runs may end at once (threads)."""
    lock = threading.Lock()

    def on_end(name: str, end: str) -> None:
        row, folder = {"recipe": name, "end": end}, work / name
        if (folder / "model.safetensors").exists():  # finished now or before (a rerun)
            try:  # one failed evaluation must not stop the runs still training
                row |= evaluate(name, folder, lfw, device, out)
            except Exception as e:  # noqa: BLE001 (reported in the row, the others go on)
                row["eval_error"] = f"{type(e).__name__}: {e}"
        else:
            print((work / f"{name}.log").read_text()[-3000:])
        with lock:
            rows[name] = row
            print(json.dumps(row), flush=True)
            text = json.dumps(list(rows.values()), indent=2) + "\n"
            (out / "gpu_recipes.json").write_text(text)

    return on_end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipes", nargs="+", help="RECIPE.toml, or RECIPE.toml@key=value,...")
    ap.add_argument("--data", type=Path, help="holds mini-train, more-train, lfw")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu-recipes"))
    ap.add_argument("--deadline-s", type=float, default=420)
    ap.add_argument("--dry-run", action="store_true", help="toy data on the CPU")
    ap.add_argument("--device", help="cuda where there is one (the real data on the CPU: a check)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE, all")
    args = ap.parse_args()
    gpu = (
        args.data is not None
        and not args.dry_run
        and (args.device is not None or torch.cuda.is_available())
    )
    device = args.device or ("cuda" if gpu else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{torch.cuda.get_device_name() if device == 'cuda' else device}, torch "
          f"{torch.__version__}, {len(args.recipes)} recipes", flush=True)  # fmt: skip
    pack_dir, extra, lfw = data_for(args, gpu)
    runs = launch_all(args.recipes, pack_dir, args.work, device, extra)
    rows: dict[str, dict] = {}
    on_end = recorder(rows, args.work, args.out, lfw, device)
    wait_all(runs, START + args.deadline_s, on_end)
    table = [rows[name] for name, _, _ in runs]
    with zipfile.ZipFile(args.out / "runs.zip", "w", zipfile.ZIP_DEFLATED) as z:  # the logs
        for name, _, folder in runs:
            for f in (*(folder / n for n in ("metrics.jsonl", "config.json", "machine.json")),
                      args.work / f"{name}.log"):  # fmt: skip
                if f.exists():
                    z.write(f, f"{name}/{f.name}")
    print(" ; ".join(f"{r['recipe']}: {r.get('lfw_accuracy', r['end'])}" for r in table))
    sys.exit(0 if all(r["end"] == "finished" for r in table) else 1)


START = time.monotonic()

if __name__ == "__main__":
    main()
