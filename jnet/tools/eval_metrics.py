"""Measure every bundle's ``eval_metrics`` (for its metadata.json) with a short training on synthetic data.

Resumable: the results file is rewritten after each bundle and bundles already in it are skipped.
"""

from __future__ import annotations

import json
import os
import platform
import time

import torch

import monai
from jnet.bundles.matrix import BundleSpec, bundle_specs
from jnet.bundles.metrics import evaluation_entry
from jnet.bundles.metrics import metric_class_names as class_names_of
from jnet.tools.bundle_commands import run_bundle_command
from jnet.tools.synthetic.defaults import synthetic_dataset

__all__ = ["measure_eval_metrics", "metric_class_names"]


def metric_class_names(spec: BundleSpec) -> list[str]:
    """The channels the bundle's metrics score (background excluded for softmax bundles)."""
    return class_names_of(spec.profile["output_channels"], bool(spec.profile["config"].get("include_background", False)))


def measure_eval_metrics(
    configs_dir: str = "configs",
    bundles_dir: str = "bundles",
    out_file: str = "configs/eval_metrics.json",
    work_dir: str = "eval_metrics_output",
    epochs: int = 20,
    num_train: int = 16,
    seed: int = 0,
    small: bool = False,
) -> dict:
    """Train each bundle of ``configs_dir``'s matrix for ``epochs`` on a synthetic dataset (``small``: small slices,
    for tests) and evaluate it with its own ``evaluate.json``; per-class and mean Dice / Jaccard into ``out_file``."""
    results = json.load(open(out_file)) if os.path.isfile(out_file) else {}
    results["_provenance"] = (
        f"python -m jnet eval_metrics --epochs {epochs} --num_train {num_train} --seed {seed}: synthetic data "
        f"(jnet's generator, Decathlon layouts), {num_train} labelled volumes, 4 folds, fold 0 held out, {epochs} epochs; "
        f"{platform.machine()} CPU x{os.cpu_count()}, torch {torch.__version__}, MONAI {monai.__version__}. "
        "Not a result on the real dataset."
    )
    for spec in bundle_specs(configs_dir):
        if spec.name in results:
            continue
        data = synthetic_dataset(spec.dataset, os.path.join(work_dir, f"{spec.dataset}_synthetic"), num_train, 2, seed, small)
        root = os.path.abspath(os.path.join(work_dir, spec.name))
        os.makedirs(root, exist_ok=True)
        bundle = os.path.join(bundles_dir, spec.name)
        common = {"dataset_dir": os.path.abspath(data), "bundle_root": root, "num_workers": 0, "num_folds": 4}
        start = time.perf_counter()
        train = {**common, "epochs": epochs, "val_interval": epochs, "batch_size": 2, "slices_per_volume": 8}
        run_bundle_command(bundle, ["configs/train.json"], train, os.path.join(root, "train.log"))
        eval_dir = os.path.join(root, "eval")
        run_bundle_command(
            bundle, ["configs/train.json", "configs/evaluate.json"], {**common, "output_dir": eval_dir}, os.path.join(root, "evaluate.log")
        )
        entry = evaluation_entry(eval_dir, metric_class_names(spec))
        results[spec.name] = entry
        results.get("_sources", {}).pop(spec.name, None)  # measured here now, not by a sweep
        print(f"{spec.name}: {entry} ({time.perf_counter() - start:.0f} s)")
        with open(out_file, "w") as f:
            json.dump(results, f, indent=4)
            f.write("\n")
    return results
