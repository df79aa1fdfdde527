"""The embedded demo: synthetic data in the Decathlon layout, the 16x16 bundle trained with and without its
head on the same budget, both evaluated at 256x256 by the bundle's own evaluate config, and a result table."""

from __future__ import annotations

import os
from dataclasses import dataclass

from jnet.bundles.parse import bundle_network, count_parameters
from jnet.bundles.metrics import read_metric_summary
from jnet.tools.bundle_commands import repo_bundle, run_bundle_command

__all__ = ["run_demo", "VariantResult", "format_table"]

BUNDLE = "prostate_mri_lowres_16"
VARIANTS = {"head": [], "baseline (levels=0)": ["configs/train_baseline.json"]}
PROGRESS_EVERY_S = 10.0  # the demo prints the training's latest epoch / loss / metric line this often


@dataclass
class VariantResult:
    name: str
    jaccard: dict[str, float]  # per class, mean over volumes
    dice: dict[str, float]
    parameters: int
    added_parameters: int
    train_seconds: float


def format_table(results: list[VariantResult], class_names: list[str]) -> str:
    header = ["variant"] + [f"Jaccard {c}" for c in class_names] + ["Jaccard mean"]
    header += [f"Dice {c}" for c in class_names] + ["Dice mean", "parameters", "added", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r.name] + [f"{r.jaccard[c]:.3f}" for c in class_names + ["mean"]]
        cells += [f"{r.dice[c]:.3f}" for c in class_names + ["mean"]]
        cells += [f"{r.parameters:,}", f"{r.added_parameters}", f"{r.train_seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(work_dir: str = "demo_output", epochs: int = 50, num_train: int = 16, seed: int = 0) -> list[VariantResult]:
    from jnet.tools.synthetic.prostate import write_prostate_task

    bundle_dir = repo_bundle(BUNDLE)
    work_dir = os.path.abspath(work_dir)
    data_dir = os.path.join(work_dir, "Task05_Prostate_synthetic")
    print(f"[1/3] writing {num_train} + 2 synthetic prostate volumes (Decathlon Task05 layout, seed {seed}) to {data_dir}")
    write_prostate_task(data_dir, num_train=num_train, num_test=2, seed=seed)

    common = {"dataset_dir": data_dir, "num_workers": 0, "num_folds": 4, "batch_size": 2, "slices_per_volume": 8}
    class_names = ["PZ", "TZ"]
    results = []
    for step, (name, extra) in enumerate(VARIANTS.items(), start=2):
        root = os.path.join(work_dir, name.split()[0])
        os.makedirs(root, exist_ok=True)
        print(f"[{step}/3] {name}: train {epochs} epochs, then evaluate on the held-out fold (logs in {root})")
        train_overrides = {**common, "bundle_root": root, "epochs": epochs, "val_interval": min(5, epochs)}  # validated at least once
        seconds = run_bundle_command(bundle_dir, ["configs/train.json"] + extra, train_overrides, os.path.join(root, "train.log"),
                                     progress_every_s=PROGRESS_EVERY_S)
        eval_dir = os.path.join(root, "eval")
        eval_files = ["configs/train.json", "configs/evaluate.json"] + extra
        run_bundle_command(bundle_dir, eval_files, {**common, "bundle_root": root, "output_dir": eval_dir}, os.path.join(root, "evaluate.log"),
                           progress_every_s=PROGRESS_EVERY_S)
        network = bundle_network(bundle_dir, extra)
        backbone = count_parameters(network.backbone)
        results.append(
            VariantResult(
                name=name,
                jaccard=read_metric_summary(os.path.join(eval_dir, "val_mean_jaccard_summary.csv"), class_names),
                dice=read_metric_summary(os.path.join(eval_dir, "val_mean_dice_summary.csv"), class_names),
                parameters=count_parameters(network),
                added_parameters=count_parameters(network) - backbone,
                train_seconds=seconds,
            )
        )
    print()
    print(f"{BUNDLE} on synthetic data: foreground Jaccard / Dice per class at 256x256, mean over held-out volumes")
    print(format_table(results, class_names))
    return results
