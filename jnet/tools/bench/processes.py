"""Wall time of a bundle's training and evaluation in one process vs ``torchrun`` with N processes (the commands of
``docs/multi_gpu.md``): ``python -m jnet bench_processes`` writes ``processes.json`` and ``processes.md``; with
``--publish True`` also ``docs/results/processes.json`` and the table of ``docs/multi_gpu.md`` rendered from it.

On a CPU-only machine the processes use gloo and share the cores (``OMP_NUM_THREADS`` = cores // N in every run,
so a process computes at the same speed alone or beside the others); on a GPU machine each process has its GPU."""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass

from jnet.tools.bundle_commands import repo_bundle, run_bundle_command
from jnet.tools.published import publish_table
from jnet.distributed import torchrun_env
from jnet.errors import InputError

__all__ = ["ProcessRun", "bench_processes", "format_processes_table", "publish_processes", "engine_seconds", "best_dice"]

BUNDLE = "prostate_mri_lowres_16"
ENGINE_LINE = re.compile(r"(SupervisedTrainer|SupervisedEvaluator) - INFO - Engine run finished\. Time taken: (\d+):(\d+):([\d.]+)")
REPORT_FILES = ("processes.json", "processes.md")
BEST_LINE = re.compile(r"Key metric: val_mean_dice best value: (\S+) at epoch")
PUBLISHED = "processes"  # docs/results/processes.json and the block of that name in docs/multi_gpu.md
PUBLISHED_PAGE = "multi_gpu.md"
PUBLISH_COMMAND = "python -m jnet bench_processes --publish True"


@dataclass
class ProcessRun:
    command: str  # "train" or "evaluate"
    processes: int
    batch_size: int | None  # per process; None for evaluation (one volume at a time)
    wall_s: float  # the whole command: start-up, caching, process group, engine, saving
    engine_s: float  # the trainer's (training + its validations) or the evaluator's run, as ignite logs it
    best_dice: float  # the best validation mean Dice the command logged
    log: str


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's share), not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def engine_seconds(log_text: str, engine: str) -> float:
    """The last ``Engine run finished. Time taken: H:M:S`` of ``engine`` (SupervisedTrainer/SupervisedEvaluator)."""
    runs = [m for m in ENGINE_LINE.finditer(log_text) if m.group(1) == engine]
    if not runs:
        raise ValueError(f"no finished {engine} run in the log")
    hours, minutes, seconds = runs[-1].group(2, 3, 4)
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def best_dice(log_text: str) -> float:
    """The last ``Key metric: val_mean_dice best value`` the log holds."""
    values = BEST_LINE.findall(log_text)
    if not values:
        raise ValueError("no 'Key metric: val_mean_dice best value' in the log")
    return float(values[-1])


def _run(bundle_dir: str, root: str, command: str, processes: int, batch_size: int | None, overrides: dict, threads: int) -> ProcessRun:
    train = command == "train"
    configs = ["configs/train.json"] + ([] if train else ["configs/evaluate.json"])
    launcher = None
    if processes > 1:  # torchrun's module under this interpreter: wherever pip put the `torchrun` script
        configs.append("configs/multi_gpu_train.json" if train else "configs/multi_gpu_evaluate.json")
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    extra = {} if batch_size is None else {"batch_size": batch_size}
    log_path = os.path.join(root, f"{command}.log")
    wall = run_bundle_command(bundle_dir, configs, {**overrides, **extra, "bundle_root": root}, log_path, launcher, torchrun_env(threads))
    text = open(log_path).read()
    engine = engine_seconds(text, "SupervisedTrainer" if train else "SupervisedEvaluator")
    return ProcessRun(command, processes, batch_size, round(wall, 1), round(engine, 1), best_dice(text), log_path)


def bench_processes(
    out_dir: str,
    dataset_dir: str | None = None,
    processes: int = 2,
    epochs: int = 10,
    batch_size: int = 4,
    num_train: int = 16,
    overrides: dict | None = None,
) -> dict:
    """
    Train ``prostate_mri_lowres_16`` for ``epochs`` in 1 process (``batch_size``), in ``processes`` processes with
    the same per-process batch (twice the global batch, half the steps) and with ``batch_size // processes`` per
    process (the same global batch); then evaluate the 1-process model on every labelled volume
    (``--val_fold -1``) in 1 and in ``processes`` processes. ``dataset_dir`` None: ``num_train`` synthetic
    volumes (seed 1) in ``out_dir/Task05_Prostate_synthetic_<num_train>`` (kept for the next call).
    ``overrides``: more bundle overrides for every command (e.g. ``{"features": 4}``). Returns the report written to ``out_dir/processes.json``.
    """
    import json

    import torch

    from jnet.tools.synthetic.prostate import write_prostate_task

    if processes < 2:
        raise InputError(f"processes must be at least 2 (compared with 1), got {processes}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    bundle_dir = repo_bundle(BUNDLE)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for name in REPORT_FILES:  # never leave an earlier report beside this run's logs
        if os.path.isfile(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    generated = dataset_dir is None
    if dataset_dir is None:
        dataset_dir = os.path.join(out_dir, f"Task05_Prostate_synthetic_{num_train}")
        if not os.path.isfile(os.path.join(dataset_dir, "dataset.json")):  # written last: a complete dataset
            shutil.rmtree(dataset_dir, ignore_errors=True)
            write_prostate_task(dataset_dir, num_train=num_train, num_test=1, seed=1)
    cores = usable_cores()
    threads = max(1, cores // processes)
    common = {"dataset_dir": os.path.abspath(dataset_dir), "num_folds": 4, "num_workers": 0, "epochs": epochs, **(overrides or {})}
    plan = [("train", 1, batch_size), ("train", processes, batch_size)]
    if batch_size % processes == 0:
        plan.append(("train", processes, batch_size // processes))
    runs = []
    for command, count, batch in plan:
        root = os.path.join(out_dir, f"train_{count}proc_batch{batch}")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        print(f"train, {count} process(es), batch {batch} per process (log: {root}/train.log)", flush=True)
        runs.append(_run(bundle_dir, root, command, count, batch, common, threads))
    model = os.path.join(out_dir, f"train_1proc_batch{batch_size}", "models", "model.pt")
    for count in (1, processes):
        root = os.path.join(out_dir, f"evaluate_{count}proc")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(os.path.join(root, "models"))
        shutil.copy(model, os.path.join(root, "models", "model.pt"))
        print(f"evaluate, {count} process(es), every labelled volume (log: {root}/evaluate.log)", flush=True)
        runs.append(_run(bundle_dir, root, "evaluate", count, None, {**common, "val_fold": -1}, threads))
    report = {
        "bundle": BUNDLE,
        "dataset_dir": common["dataset_dir"],
        "synthetic_num_train": num_train if generated else None,
        "epochs": epochs,
        "overrides": overrides or {},
        "threads_per_process": threads,
        "device": "cuda" if torch.cuda.is_available() else "cpu (gloo)",
        "machine": f"{cores} usable cores, torch {torch.__version__}",
        "runs": [asdict(r) for r in runs],
    }
    with open(os.path.join(out_dir, REPORT_FILES[0]), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, REPORT_FILES[1]), "w") as f:
        f.write(format_processes_table(report) + "\n")
    return report


def format_processes_table(report: dict) -> str:
    """The Markdown table of a report of :func:`bench_processes` (``processes.json``), one row per run."""
    lines = [
        "| command | processes | `--batch_size` | wall (s) | trainer/evaluator engine time (s) | best val Dice |",
        "|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        what = f"train, {report['epochs']} epochs" if run["command"] == "train" else "evaluate, every volume (`--val_fold -1`)"
        batch = "-" if run["batch_size"] is None else f"{run['batch_size']}" + (" per process" if run["processes"] > 1 else "")
        lines.append(f"| {what} | {run['processes']} | {batch} | {run['wall_s']} | {run['engine_s']} | {run['best_dice']:.3f} |")
    return "\n".join(lines)


def publish_processes(report: dict, docs_dir: str = "docs") -> str:
    """Write ``report`` to ``docs/results/processes.json`` and its table (:func:`format_processes_table`) between the
    ``processes`` markers of ``docs/multi_gpu.md``; returns the JSON's path."""
    return publish_table(PUBLISHED, report, format_processes_table(report), PUBLISHED_PAGE, docs_dir)
