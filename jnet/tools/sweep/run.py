"""The ``sweep`` verb: every variant at every input resolution, trained on the same cached data with the same
budget, scored on the same held-out volumes at 256x256, with inference cost; resumable."""

from __future__ import annotations

import json
import os
import platform
import time

import torch
from tqdm import tqdm

import monai
from jnet.tools.bench.bundles import bench_networks
from jnet.bundles.parse import count_parameters
from jnet.tools.bundle_commands import repo_bundle
from jnet.tools.synthetic.defaults import synthetic_dataset

from .data import NUM_FOLDS, load_sweep_data
from .report import write_reports
from .train import LEARNING_RATE, REFERENCE, VARIANTS, Variant, build_network, score_volumes, train_run

__all__ = ["run_sweep"]

BUNDLE_FOR = {"prostate": "prostate_mri_lowres_16", "brats": "brats_mri_lowres_16"}


def _save(results: dict, path: str) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)


def run_sweep(
    work_dir: str = "sweep_output",
    dataset: str = "prostate",
    dataset_dir: str | None = None,
    dataset_layout: str | None = None,
    resolutions: tuple[int, ...] = (16, 32, 64, 128),
    variants: tuple[str, ...] = ("baseline", "bilinear", "head", "head_paper"),
    seeds: int = 3,
    single_seed_from: int = 128,
    iterations: int = 400,
    batch_size: int = 8,
    features: int = 8,
    reference: bool = True,
    num_train: int = 16,
    data_seed: int = 0,
    speed_budget_s: float = 0.5,
    remeasure_speed: bool = False,
) -> dict:
    """Run (or resume) the sweep; writes ``sweep.json``, ``sweep.md``, ``quality_vs_throughput.png`` and
    ``examples.png`` into ``work_dir``. Resolutions >= ``single_seed_from`` and the reference use one seed.
    ``remeasure_speed``: measure the inference cost of every run again (on a machine that was busy the first time);
    finished runs are not retrained."""
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(work_dir, exist_ok=True)
    generated = dataset_dir is None
    dataset_dir = dataset_dir or synthetic_dataset(dataset, os.path.join(work_dir, f"{dataset}_synthetic_seed{data_seed}"), num_train, 0, data_seed)
    bundle_dir = repo_bundle(BUNDLE_FOR[dataset])
    data = load_sweep_data(bundle_dir, dataset_dir, os.path.join(work_dir, "slices.pt"), dataset_layout=dataset_layout)
    path = os.path.join(work_dir, "sweep.json")
    results = json.load(open(path)) if os.path.isfile(path) else {"runs": {}, "speed": {}}
    wall_before = results.get("wall_s", 0.0)  # a resumed sweep adds its time to the earlier calls
    if remeasure_speed:
        results["speed"] = {}
    results["config"] = {
        "dataset": dataset,
        "dataset_dir": os.path.abspath(dataset_dir),
        "synthetic": generated,
        "synthetic_generator": {"num_train": num_train, "seed": data_seed} if generated else None,
        "train_slices": int(len(data.train_images)),
        "held_out_volumes": len(data.val_images),
        "dataset_layout": dataset_layout,
        "num_train": num_train,
        "data_seed": data_seed,
        "resolutions": list(resolutions),
        "variants": list(variants),
        "seeds": seeds,
        "single_seed_from": single_seed_from,
        "reference": reference,
        "num_folds": NUM_FOLDS,
        "learning_rate": LEARNING_RATE,
        "iterations": iterations,
        "batch_size": batch_size,
        "features": features,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, MONAI {monai.__version__}",
    }
    plan: list[tuple[Variant, int, int]] = []
    for r in resolutions:
        for name in variants:
            for seed in range(1 if r >= single_seed_from else seeds):
                plan.append((VARIANTS[name], r, seed))
    if reference:
        plan.append((REFERENCE, 256, 0))
    in_channels = int(data.train_images.shape[1])
    for variant, r, seed in tqdm(plan, desc="sweep runs"):
        key = f"{variant.name}@{r}"
        if f"{key}#{seed}" not in results["runs"]:
            network, seconds = train_run(variant, data, r, seed, iterations, batch_size, features)
            scores = score_volumes(network, data, r, variant)
            results["runs"][f"{key}#{seed}"] = {**scores, "train_s": seconds}
            torch.save(network.state_dict(), os.path.join(work_dir, f"{key}#{seed}.pt"))
            results["wall_s"] = wall_before + time.perf_counter() - started
            _save(results, path)
    groups: dict[int, dict[str, Variant]] = {}  # the variants of one input size are timed together, alternately
    for variant, r, _ in plan:
        if f"{variant.name}@{r}" not in results["speed"]:
            groups.setdefault(r, {})[f"{variant.name}@{r}"] = variant
    for r, group in tqdm(groups.items(), desc="inference cost"):
        networks = {key: build_network(v, in_channels, data.num_classes, r, features) for key, v in group.items()}
        for key, speed in bench_networks(networks, (in_channels, r, r), speed_budget_s).items():
            speed["added_parameters"] = count_parameters(networks[key]) - count_parameters(networks[key].backbone)
            results["speed"][key] = speed
        if remeasure_speed:  # the sweep's own time stays that of its first, complete run
            results["remeasure_speed_s"] = time.perf_counter() - started
        else:
            results["wall_s"] = wall_before + time.perf_counter() - started
        _save(results, path)
    write_reports(results, data, work_dir, features)  # adds the per-variant summary to results
    _save(results, path)
    return results
