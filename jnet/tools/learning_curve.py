"""The ``learning_curve`` verb: how many epochs give a usable model, measured on the synthetic default data.

Each bundle is trained by its own ``configs/train.json`` through ``python -m monai.bundle run``
(:func:`~jnet.tools.bundle_commands.run_bundle_command`) on the sweep's synthetic default dataset
(:func:`~jnet.tools.synthetic.defaults.synthetic_dataset`, 16 labelled volumes, data seed 0, the sweep's
:data:`~jnet.tools.sweep.data.NUM_FOLDS` folds with fold 0 held out) with the sweep's command-line overrides
(:func:`~jnet.tools.sweep.train.run_overrides`), validated every ``val_interval`` epochs. The curve is read from the
run's log, the lines the bundle's validation ``StatsHandler`` prints after each validation:

- ``val_mean_dice``: the bundle's own key validation metric (MONAI ``MeanDice`` at 256x256 over the held-out fold:
  foreground classes - BraTS: its three regions -, mean over volumes and classes; the metric that picks
  ``models/model.pt``);
- ``val_dice_<class>``: the same Dice per class (``MeanDice`` with ``reduction="mean_batch"``), added to the bundle's
  ``validate#additional_metrics`` by one override file (:func:`per_class_override`); an additional metric changes
  neither the weights nor the model selection.

Rule (:func:`usable_epoch`): a model is usable at the first validated epoch at which every scored class has a Dice of
at least 0.1 AND ``val_mean_dice`` reaches 90 % of the best ``val_mean_dice`` of the run; "not reached" where no
validated epoch meets both. The class floor is 0.1, not "non-zero": a mask with a few stray voxels of a class scores
a non-zero Dice (0.0001 in the log) without segmenting it, and 90 % of the best of a run that never learns a class is
still a model that misses it. The epoch is one of a run of ``epochs`` epochs (the learning rate follows the bundle's
cosine schedule over ``epochs``), not a run trained for that many epochs.

Results go to ``docs/results/learning_curve.json`` (merged per bundle: each entry keeps its own settings, command,
machine and wall time), and the table to ``<work_dir>/learning_curve.md``; ``python -m jnet generate`` renders each
bundle's "How long to train" section from the JSON. ``--rederive True`` (:func:`rederive_usable`) applies the current
rule to the stored curves again, without training.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Sequence

import torch

import monai
from jnet.bundles.matrix import BundleSpec, bundle_specs
from jnet.errors import InputError
from jnet.handlers import validation_epochs
from jnet.tools.bundle_commands import REPO_BUNDLES, bundle_command, run_bundle_command
from jnet.tools.eval_metrics import metric_class_names
from jnet.tools.sweep.data import NUM_FOLDS
from jnet.tools.sweep.train import run_overrides
from jnet.tools.synthetic.defaults import synthetic_dataset

__all__ = [
    "CURVE_METRIC", "USABLE_FRACTION", "USABLE_MIN_CLASS_DICE", "usable_rule", "usable_epoch", "per_class_override",
    "class_metric_names", "parse_validations", "format_table", "measure_learning_curves", "rederive_usable",
]

CURVE_METRIC = "val_mean_dice"  # the bundle's key validation metric (validate#key_metric of train.json)
PER_CLASS_METRIC = "val_dice_per_class"  # the additional metric of per_class_override
USABLE_FRACTION = 0.9  # of the run's best CURVE_METRIC
USABLE_MIN_CLASS_DICE = 0.1  # every scored class at least this Dice
OUT_FILE = os.path.join("docs", "results", "learning_curve.json")
# StatsHandler's line after each validation: "Epoch[3] Metrics -- name: 0.1234 name: nan ..."
METRICS_LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)$")
METRIC_VALUE = re.compile(r"(\w+): (nan|-?inf|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def usable_rule(fraction: float = USABLE_FRACTION, min_class_dice: float = USABLE_MIN_CLASS_DICE) -> str:
    """The rule of :func:`usable_epoch` in words."""
    return (
        f"the first validated epoch at which every scored class has a validation Dice of at least {min_class_dice:g} "
        f"(val_dice_<class> >= {min_class_dice:g}: the masks find the class, not a few stray voxels of it) AND "
        f"{CURVE_METRIC} reaches {fraction:.0%} of the best {CURVE_METRIC} of the run; 'not reached' where no "
        "validated epoch meets both"
    )


def usable_epoch(curve: Sequence[dict], fraction: float = USABLE_FRACTION, min_class_dice: float = USABLE_MIN_CLASS_DICE) -> int | None:
    """The first epoch of ``curve`` (``[{"epoch": e, CURVE_METRIC: m, "dice_per_class": {class: d}}, ...]`` in
    epoch order) at which every class's Dice is >= ``min_class_dice`` (and > 0) and ``CURVE_METRIC`` >= ``fraction``
    x the curve's best; ``None`` (not reached) when no epoch meets both, e.g. a run whose best is 0 or that never
    finds a class."""
    values = [point[CURVE_METRIC] for point in curve if point[CURVE_METRIC] == point[CURVE_METRIC]]  # NaN left out
    if not values or max(values) <= 0:
        return None
    threshold = fraction * max(values)
    for point in curve:
        classes = list(point["dice_per_class"].values())
        if classes and all(d > 0 and d >= min_class_dice for d in classes) and point[CURVE_METRIC] >= threshold:
            return int(point["epoch"])
    return None


def class_metric_names(class_names: Sequence[str]) -> dict[str, str]:
    """``{"val_dice_peripheral_zone": "peripheral zone", ...}``: the log key of each scored class."""
    return {"val_dice_" + re.sub(r"\W+", "_", name.lower()).strip("_"): name for name in class_names}


def per_class_override(class_names: Sequence[str]) -> dict:
    """The override file's content: ``MeanDice`` per class (``reduction="mean_batch"``, one log key per class) in
    ``validate#additional_metrics``, with the key metric's ``include_background`` and ``output_transform``."""
    return {
        f"validate#additional_metrics#{PER_CLASS_METRIC}": {
            "_target_": "MeanDice",
            "include_background": "@include_background",
            "reduction": "mean_batch",
            "return_with_label": list(class_metric_names(class_names)),
            "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
        }
    }


def parse_validations(log_text: str, class_names: Sequence[str]) -> list[dict]:
    """Every validation of a training log as ``{"epoch", CURVE_METRIC, "dice_per_class": {class: Dice}}``, in epoch
    order; a validation line without ``CURVE_METRIC`` or a class is refused (:class:`~jnet.errors.InputError`)."""
    keys = class_metric_names(class_names)
    curve: dict[int, dict] = {}
    for line in log_text.splitlines():
        match = METRICS_LINE.search(line)
        if not match:
            continue
        values = {name: float(value) for name, value in METRIC_VALUE.findall(match.group(2))}
        missing = [key for key in (CURVE_METRIC, *keys) if key not in values]
        if missing:
            raise InputError(f"a validation line of the training log lacks {', '.join(missing)}: {line.strip()}")
        epoch = int(match.group(1))
        curve[epoch] = {"epoch": epoch, CURVE_METRIC: values[CURVE_METRIC], "dice_per_class": {name: values[key] for key, name in keys.items()}}
    return [curve[epoch] for epoch in sorted(curve)]


def _shell(argv: Sequence[str]) -> str:
    """``argv`` as one shell line (double quotes around a value that needs them and holds no ``"$`\\``)."""
    words = []
    for word in argv:
        plain = shlex.quote(word) == word
        words.append(word if plain else f'"{word}"' if not set('"$`\\') & set(word) else shlex.quote(word))
    return " ".join(words)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, MONAI {monai.__version__}"


def _specs(configs_dir: str, bundles: Sequence[str] | None) -> list[BundleSpec]:
    specs = {spec.name: spec for spec in bundle_specs(configs_dir)}
    unknown = [name for name in bundles or () if name not in specs]
    if unknown:
        raise InputError(f"unknown bundle(s) {', '.join(unknown)}; known: {', '.join(specs)}.")
    return [specs[name] for name in bundles] if bundles else list(specs.values())


def _point(curve: list[dict], epoch: int | None) -> dict | None:
    return next((point for point in curve if point["epoch"] == epoch), None)


def _measure_bundle(spec: BundleSpec, bundles_dir: str, work_dir: str, settings: dict, dataset_dir: str, threads: int | None) -> dict:
    """Train one bundle for ``settings["epochs"]`` through ``monai.bundle run`` (``threads``: its ``OMP_NUM_THREADS``)
    and read its curve from the log."""
    classes = metric_class_names(spec)
    root = os.path.abspath(os.path.join(work_dir, spec.name))
    os.makedirs(root, exist_ok=True)
    override_file = os.path.join(root, "per_class_dice.json")
    with open(override_file, "w") as f:
        json.dump(per_class_override(classes), f, indent=4)
    config = {"dataset_dir": os.path.abspath(dataset_dir), "num_folds": NUM_FOLDS, **settings}
    overrides = run_overrides(config, settings["seed"], root)
    files = ["configs/train.json", override_file]
    log = os.path.join(root, "train.log")
    print(f"{spec.name}: {settings['epochs']} epochs, validated every {settings['val_interval']} (log: {log})", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    seconds = run_bundle_command(os.path.join(bundles_dir, spec.name), files, overrides, log, env=env, progress_every_s=30.0)
    curve = parse_validations(open(log).read(), classes)
    expected = validation_epochs(settings["epochs"], settings["val_interval"])  # the bundles' IntervalAndLastValidation
    if [point["epoch"] for point in curve] != expected:
        raise InputError(f"{log}: validations at epochs {[p['epoch'] for p in curve]}, expected {expected}.")
    argv = ([f"OMP_NUM_THREADS={threads}"] if threads else []) + ["python", *bundle_command(files, overrides)[1:]]
    usable = usable_epoch(curve, settings["fraction"], settings["min_class_dice"])
    best = max(curve, key=lambda point: point[CURVE_METRIC])
    return {
        "dataset": spec.dataset,
        "classes": classes,
        "settings": settings,
        "usable_epoch": usable,
        "at_usable": _point(curve, usable),
        "last": curve[-1],
        "best": best,
        "curve": curve,
        "train_s": round(seconds, 1),
        "machine": _machine(),
        "command": f"cd bundles/{spec.name} && {_shell(argv)}",
        "per_class_override": per_class_override(classes),
    }


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def format_table(report: dict) -> str:
    """The Markdown table of ``report["bundles"]``: epochs run, usable epoch, the metric there, at the last epoch and
    at its best, training seconds."""
    lines = [
        f"Usable model: {report['rule']}. Metric: {report['metric']}.",
        "",
        f"| bundle | epochs run | validated every | epochs for a usable model | {CURVE_METRIC} there | {CURVE_METRIC} last | best (epoch) | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["bundles"].items():
        usable, at = entry["usable_epoch"], entry["at_usable"]
        best = entry["best"]
        lines.append(
            f"| {name} | {entry['settings']['epochs']} | {entry['settings']['val_interval']} "
            f"| {usable if usable is not None else 'not reached'} | {_fmt(at[CURVE_METRIC]) if at else '-'} "
            f"| {_fmt(entry['last'][CURVE_METRIC])} | {_fmt(best[CURVE_METRIC])} ({best['epoch']}) | {entry['train_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _call_command(bundles: Sequence[str] | None, settings: dict, work_dir: str, out_file: str, small: bool, threads: int | None) -> str:
    parts = ["python -m jnet learning_curve"]
    if bundles:
        parts.append("--bundles \"[" + ",".join(f"'{name}'" for name in bundles) + "]\"")
    parts += [f"--epochs {settings['epochs']}", f"--val_interval {settings['val_interval']}", f"--num_train {settings['num_train']}",
              f"--data_seed {settings['data_seed']}", f"--work_dir {work_dir}"]
    if out_file != OUT_FILE:
        parts.append(f"--out_file {out_file}")
    if small:
        parts.append("--small True")
    if threads:
        parts.append(f"--threads {threads}")
    return " ".join(parts)


def measure_learning_curves(
    bundles: Sequence[str] | None = None,
    epochs: int = 40,
    val_interval: int = 1,
    num_train: int = 16,
    data_seed: int = 0,
    seed: int = 0,
    work_dir: str = "learning_curve_output",
    out_file: str = OUT_FILE,
    configs_dir: str = "configs",
    bundles_dir: str | None = None,
    small: bool = False,
    threads: int | None = None,
    note: str | None = None,
) -> dict:
    """Train each of ``bundles`` (default: every bundle of ``configs_dir``'s matrix) for ``epochs`` on the synthetic
    default dataset (written once under ``work_dir``; ``small``: small slices, for tests), validating every
    ``val_interval`` epochs; derive its epochs for a usable model (:func:`usable_epoch`). Each bundle's entry replaces
    its entry in ``out_file`` as soon as it is measured (the others are kept); the table goes to
    ``work_dir/learning_curve.md``; calls that run at the same time merge their entries. ``threads``: the training
    processes' ``OMP_NUM_THREADS`` (default: torch's, every core; 1 is faster on a busy machine and changes no more
    than float rounding). ``note``: a remark on the machine or the run, kept with this call. Returns the report."""
    if epochs < 1 or val_interval < 1 or val_interval > epochs:
        raise InputError(f"need 1 <= --val_interval <= --epochs, got --epochs {epochs} --val_interval {val_interval}.")
    bundles_dir = bundles_dir or REPO_BUNDLES
    specs = _specs(configs_dir, list(bundles) if bundles else None)
    started = time.perf_counter()
    os.makedirs(work_dir, exist_ok=True)
    settings = {"epochs": epochs, "val_interval": val_interval, "seed": seed, "num_train": num_train, "data_seed": data_seed,
                "num_folds": NUM_FOLDS, "small": small, "fraction": USABLE_FRACTION,
                "min_class_dice": USABLE_MIN_CLASS_DICE}
    header = {
        "rule": usable_rule(USABLE_FRACTION, USABLE_MIN_CLASS_DICE),
        "metric": (f"{CURVE_METRIC}: the bundle's key validation metric (MONAI MeanDice at 256x256 on the held-out "
                   "fold, foreground classes - BraTS: its three regions -, mean over volumes and classes), as the "
                   "validation StatsHandler logs it; per class: val_dice_<class> (MeanDice, reduction mean_batch, "
                   "added to validate#additional_metrics by per_class_override: it changes neither the weights nor "
                   "the model selection)"),
        "data": (f"the sweep's synthetic default (jnet.tools.synthetic.defaults.synthetic_dataset: {num_train} labelled "
                 f"volumes, data seed {data_seed}{', small slices' if small else ''}, Decathlon layouts), {NUM_FOLDS} folds, fold 0 "
                 "held out for validation; not a real dataset"),
        "epoch_meaning": ("an epoch of one run of settings.epochs epochs, whose learning rate follows the bundle's cosine "
                          "schedule over those epochs (a run of fewer epochs anneals sooner); one training seed"),
    }
    call = {"command": _call_command(bundles, settings, work_dir, out_file, small, threads), "machine": _machine(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "bundles": [spec.name for spec in specs], "note": note, "wall_s": 0.0}
    report = _merge(out_file, header, call, {}, configs_dir)
    for spec in specs:
        data = synthetic_dataset(spec.dataset, os.path.join(work_dir, f"{spec.dataset}_synthetic_seed{data_seed}{'_small' if small else ''}"),
                                 num_train, 0, data_seed, small)
        entry = _measure_bundle(spec, bundles_dir, work_dir, settings, data, threads)
        entry["call"] = call["command"]
        call["wall_s"] = round(time.perf_counter() - started, 1)
        report = _merge(out_file, header, call, {spec.name: entry}, configs_dir)
        usable = entry["usable_epoch"]
        print(f"{spec.name}: usable model {f'after epoch {usable}' if usable is not None else 'not reached'} in {epochs} epochs "
              f"({CURVE_METRIC} last {entry['last'][CURVE_METRIC]:.3f}, best {entry['best'][CURVE_METRIC]:.3f}; {entry['train_s']:.0f} s)", flush=True)
    table = format_table(report)
    with open(os.path.join(work_dir, "learning_curve.md"), "w") as f:
        f.write(table)
    print(table, end="")
    print(f"wrote {out_file} and {os.path.join(work_dir, 'learning_curve.md')}; run `python -m jnet generate` for the READMEs", file=sys.stderr)
    return report


def rederive_usable(out_file: str = OUT_FILE, configs_dir: str = "configs") -> dict:
    """Derive every bundle's epochs for a usable model in ``out_file`` again from its stored curve with the current
    rule (:data:`USABLE_FRACTION`, :data:`USABLE_MIN_CLASS_DICE`), without training; the call is recorded. Returns
    the report."""
    if not os.path.isfile(out_file):
        raise InputError(f"{out_file}: no such file; measure first (python -m jnet learning_curve).")
    started = time.perf_counter()
    report = json.load(open(out_file))
    entries = {}
    for name, entry in report.get("bundles", {}).items():
        settings = {**entry["settings"], "fraction": USABLE_FRACTION, "min_class_dice": USABLE_MIN_CLASS_DICE}
        usable = usable_epoch(entry["curve"], USABLE_FRACTION, USABLE_MIN_CLASS_DICE)
        entries[name] = {**entry, "settings": settings, "usable_epoch": usable, "at_usable": _point(entry["curve"], usable)}
    command = "python -m jnet learning_curve --rederive True" + (f" --out_file {out_file}" if out_file != OUT_FILE else "")
    call = {"command": command, "machine": _machine(), "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "bundles": list(entries), "note": "the usable epochs derived again from the stored curves with the rule above (no training)",
            "wall_s": round(time.perf_counter() - started, 1)}
    report = _merge(out_file, {"rule": usable_rule(USABLE_FRACTION, USABLE_MIN_CLASS_DICE)}, call, entries, configs_dir)
    print(format_table(report), end="")
    return report


def _merge(path: str, header: dict, call: dict, entries: dict, configs_dir: str) -> dict:
    """Read ``path`` (if any), set ``header``, this ``call`` (by its start time and command) and ``entries``, write
    it back atomically, under a lock on its folder: calls running at the same time keep each other's entries."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = json.load(open(path)) if os.path.isfile(path) else {}
        report.update(header)
        calls = [c for c in report.get("calls", []) if (c.get("started"), c.get("command")) != (call["started"], call["command"])]
        report["calls"] = calls + [call]
        bundles = {**report.get("bundles", {}), **entries}
        order = [spec.name for spec in bundle_specs(configs_dir)]
        report["bundles"] = {name: bundles[name] for name in sorted(bundles, key=lambda n: order.index(n) if n in order else len(order))}
        with open(path + ".tmp", "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        os.replace(path + ".tmp", path)
    finally:
        os.close(lock)  # releases the lock
    return report
