"""The ``sweep`` verb: every variant at every input resolution, each run the bundle's own ``train.json`` (merged
with the variant's override files) trained on the same cached volumes, scored on the same held-out volumes at
256x256, with inference cost; resumable."""

from __future__ import annotations

import json
import os
import platform
import time

import torch
from tqdm import tqdm

import monai
from jnet.bundles.parse import count_parameters
from jnet.networks import DEFAULT_SIZES
from jnet.tools.bench.bundles import bench_networks
from jnet.tools.synthetic.defaults import synthetic_dataset

from .data import NUM_FOLDS, load_sweep_data
from .report import write_reports
from .train import SETTINGS, VARIANTS, Variant, bundle_for, bundle_run_command, epochs_factor, run_overrides, run_parser, score_volumes, train_run

__all__ = ["run_sweep", "DEFAULT_VARIANTS"]

DEFAULT_VARIANTS = tuple(name for name in VARIANTS if name != "reference" and not VARIANTS[name].any_size)  # any*: asked for by name
REFERENCE_KEY = "reference@256#0"
PROGRESS_EVERY_S = 10.0  # each run prints its epoch and loss this often
def _save(results: dict, path: str) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)


def _plan(config: dict) -> list[tuple[Variant, int, int]]:
    plan = []
    for r in config["resolutions"]:
        for name in config["variants"]:
            variant = VARIANTS[name]
            if variant.factor and r not in config["factor_resolutions"]:
                continue
            if variant.any_size:  # one training per seed (the _any bundle, listed at the smallest size); scored at every size
                if r == min(config["resolutions"]):
                    plan += [(variant, r, seed) for seed in range(config["seeds"])]
                continue
            for seed in range(1 if r >= config["single_seed_from"] else config["seeds"]):
                plan.append((variant, r, seed))
    if any(variant.teacher for variant, _, _ in plan):  # the distillation teacher trains first
        plan.insert(0, (VARIANTS["reference"], 256, 0))
    elif config["reference"]:
        plan.append((VARIANTS["reference"], 256, 0))
    return plan


def _teacher_file(variant: Variant, results: dict, work_dir: str) -> str | None:
    """The reference run's weights, for a variant that distils from it."""
    if not variant.teacher:
        return None
    return os.path.abspath(os.path.join(work_dir, results["runs"][REFERENCE_KEY]["model_file"]))


def _scored_at(key: str) -> str:
    """What an any-size run's command adds for the size it was scored at (its key ``variant@size#seed``)."""
    return f" (scored with --input_size {key.split('@')[1].split('#')[0]})"


def run_sweep(
    work_dir: str = "sweep_output",
    dataset: str = "prostate",
    dataset_dir: str | None = None,
    dataset_layout: str | None = None,
    setting: str = "bundle",
    resolutions: tuple[int, ...] = (16, 32, 64, 128),
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    factor_resolutions: tuple[int, ...] = (16, 32),
    seeds: int = 3,
    single_seed_from: int = 64,
    epochs: int = 40,
    val_interval: int = 5,
    batch_size: int | None = None,
    features: int | None = None,
    reference: bool = True,
    num_train: int = 16,
    data_seed: int = 0,
    speed_budget_s: float = 0.5,
    remeasure_speed: bool = False,
    revalidate_cache: bool = False,
) -> dict:
    """Run (or resume) the sweep; writes ``sweep.json``, ``sweep.md``, ``ablation.md``, ``quality_vs_throughput.png``
    and ``examples.png`` into ``work_dir``. Every run is ``configs/train.json`` of the bundle at its input size merged
    with the ``setting``'s and the variant's override files, with ``epochs``, ``val_interval``, ``seed`` and (where
    given) ``batch_size`` / ``features`` as overrides - its ``monai.bundle run`` command is in ``sweep.json``. The
    one-change ablations of ``head`` (``Variant.factor``) run at ``factor_resolutions`` only; resolutions >=
    ``single_seed_from`` and the reference use one seed. ``remeasure_speed``: measure the inference cost of every
    run again (on a machine that was busy the first time); finished runs are not retrained. ``revalidate_cache``:
    after a code or config change (or with the same data regenerated elsewhere), keep the finished runs if the
    volumes made now equal the cached ones tensor for tensor (:func:`~jnet.tools.sweep.data.load_sweep_data`)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {tuple(SETTINGS)}, got {setting!r}.")
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {tuple(VARIANTS)}.")
    switchable = [name for name in variants if VARIANTS[name].any_size]
    if switchable and not set(resolutions) <= set(DEFAULT_SIZES):
        raise ValueError(f"variant {switchable[0]} serves the input sizes {list(DEFAULT_SIZES)}; resolutions {list(resolutions)} go beyond them.")
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(work_dir, exist_ok=True)
    generated = dataset_dir is None
    dataset_dir = dataset_dir or synthetic_dataset(dataset, os.path.join(work_dir, f"{dataset}_synthetic_seed{data_seed}"), num_train, 0, data_seed)
    setting_files = SETTINGS[setting]
    data = load_sweep_data(bundle_for(dataset, 16), dataset_dir, os.path.join(work_dir, "volumes.pt"), setting_files,
                           dataset_layout=dataset_layout, revalidate=revalidate_cache)
    path = os.path.join(work_dir, "sweep.json")
    results = json.load(open(path)) if os.path.isfile(path) else {"runs": {}, "speed": {}}
    wall_before = results.get("wall_s", 0.0)  # a resumed sweep adds its time to the earlier calls
    if remeasure_speed:
        results["speed"] = {}
    config = {
        "dataset": dataset,
        "dataset_dir": os.path.abspath(dataset_dir),
        "synthetic": generated,
        "synthetic_generator": {"num_train": num_train, "seed": data_seed} if generated else None,
        "setting": setting,
        "train_volumes": len(data.train_volumes),
        "train_slices": data.train_slices,
        "held_out_volumes": len(data.val_volumes),
        "dataset_layout": dataset_layout,
        "num_train": num_train,
        "data_seed": data_seed,
        "resolutions": list(resolutions),
        "variants": list(variants),
        "factor_resolutions": list(factor_resolutions),
        "seeds": seeds,
        "single_seed_from": single_seed_from,
        "reference": reference,
        "num_folds": NUM_FOLDS,
        "epochs": epochs,
        "val_interval": val_interval,
        "batch_size": batch_size,
        "features": features,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, MONAI {monai.__version__}",
    }
    results["config"] = config
    plan = _plan(config)
    for variant, r, seed in tqdm(plan, desc="sweep runs"):
        key = f"{variant.name}@{r}#{seed}"
        files, bundle_dir = setting_files + variant.config_files, bundle_for(dataset, r, variant.any_size)
        teacher_file, factor = _teacher_file(variant, results, work_dir), epochs_factor(dataset, variant)
        command = f"cd bundles/{os.path.basename(bundle_dir)} && " + bundle_run_command(bundle_dir, files, run_overrides(config, seed, teacher_file=teacher_file, factor=factor))
        scored = [f"{variant.name}@{size}#{seed}" for size in config["resolutions"]] if variant.any_size else [key]
        if all(k in results["runs"] for k in scored):  # trained before: its command is derived from the config again
            for k in scored:
                results["runs"][k]["command"] = command + (_scored_at(k) if variant.any_size else "")
            continue
        run_dir = os.path.join(work_dir, "runs", key.replace("#", "_seed"))
        parser = run_parser(bundle_dir, files, run_overrides(config, seed, run_dir, teacher_file, factor))
        network, seconds = train_run(parser, data, key, PROGRESS_EVERY_S)
        for scored_key in scored:  # the any-size network: the same weights at every input size
            size = int(scored_key.split("@")[1].split("#")[0])
            # the any variant: always parsed at the size scored (its bundle's own input_size is its default, not r)
            at_size = run_parser(bundle_dir, files, {**run_overrides(config, seed, run_dir, teacher_file, factor), "input_size": size}) if variant.any_size else parser
            results["runs"][scored_key] = {
                **score_volumes(network, at_size, data),
                "scored_input_size": int(at_size.get_parsed_content("operating_size")),  # what the network was fed
                "train_s": seconds,
                "model_file": os.path.relpath(parser.get_parsed_content("model_file"), work_dir),
                "command": command + (_scored_at(scored_key) if variant.any_size else ""),
                **({"trained_once_for": list(config["resolutions"])} if variant.any_size else {}),
            }
        results["wall_s"] = wall_before + time.perf_counter() - started
        _save(results, path)
    groups: dict[int, dict[str, Variant]] = {}  # the variants of one input size are timed together, alternately
    for variant, r, _ in plan:
        for size in config["resolutions"] if variant.any_size else [r]:
            if f"{variant.name}@{size}" not in results["speed"]:
                groups.setdefault(size, {})[f"{variant.name}@{size}"] = variant
    for r, group in tqdm(groups.items(), desc="inference cost"):
        networks = {
            key: run_parser(bundle_for(dataset, r, v.any_size), setting_files + v.config_files, run_overrides(config, 0)).get_parsed_content("network_def")
            for key, v in group.items()
        }
        for key, speed in bench_networks(networks, (data.in_channels, r, r), speed_budget_s).items():
            speed["added_parameters"] = count_parameters(networks[key]) - count_parameters(networks[key].backbone)
            results["speed"][key] = speed
        if remeasure_speed:  # the sweep's own time stays that of its first, complete run
            results["remeasure_speed_s"] = time.perf_counter() - started
        else:
            results["wall_s"] = wall_before + time.perf_counter() - started
        _save(results, path)
    write_reports(results, data, work_dir)  # adds the per-variant summary and the paired ablation to results
    _save(results, path)
    return results
