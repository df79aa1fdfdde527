"""The sweep's outputs: a Markdown table, a quality-vs-throughput plot and a figure of example predictions."""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .data import SweepData  # noqa: E402
from .train import SETTINGS, VARIANTS, bundle_for, predict_volume, run_overrides, run_parser  # noqa: E402

__all__ = ["aggregate", "paired_effects", "format_sweep_table", "format_ablation_table", "write_reports", "seed_std"]


def seed_std(values) -> float | None:
    """The sample standard deviation over seeds (``ddof=1``); ``None`` for one seed."""
    values = np.asarray(values, dtype=float)
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def aggregate(results: dict) -> dict[str, dict]:
    """Per ``variant@r``: mean and sample standard deviation (ddof=1) over seeds of the mean foreground Jaccard and
    Dice, and the per-class means."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for run_key, run in results["runs"].items():
        grouped[run_key.split("#")[0]].append(run)
    summary = {}
    for key, runs in grouped.items():
        jaccard = np.array([r["jaccard"] for r in runs])
        dice = np.array([r["dice"] for r in runs])
        summary[key] = {
            "seeds": len(runs),
            "jaccard_mean": float(np.nanmean(jaccard.mean(axis=1))),
            "jaccard_std": seed_std(jaccard.mean(axis=1)),
            "dice_mean": float(np.nanmean(dice.mean(axis=1))),
            "dice_std": seed_std(dice.mean(axis=1)),
            "jaccard_per_class": [float(v) for v in np.nanmean(jaccard, axis=0)],
            "dice_per_class": [float(v) for v in np.nanmean(dice, axis=0)],
            "train_s": float(np.mean([r["train_s"] for r in runs])),
        }
    return summary


def _ordered_keys(summary: dict) -> list[str]:
    def order(key: str) -> tuple[int, int]:
        name, r = key.split("@")
        names = list(VARIANTS)
        return int(r), names.index(name) if name in names else len(names)

    return sorted(summary, key=order)


def _mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def format_sweep_table(results: dict, summary: dict) -> str:
    lines = [
        "| input | variant | Jaccard (mean fg) | Dice (mean fg) | Jaccard per class | seeds | parameters | added "
        "| MACs (M) | eager b1 img/s | eager b32 img/s | ORT b1 img/s | ORT b32 img/s | peak MB b32 | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in _ordered_keys(summary):
        name, r = key.split("@")
        if VARIANTS[name].factor:  # the one-change ablations: their own table
            continue
        s, speed = summary[key], results["speed"].get(key, {})
        per_class = " / ".join(f"{v:.3f}" for v in s["jaccard_per_class"])
        cost = "| - " * 8
        if speed:
            memory = speed.get("peak_memory_mb_b32")
            cost = (
                f"| {speed['parameters']:,} | {speed['added_parameters']} | {speed['macs'] / 1e6:.1f} "
                f"| {speed['eager']['images_per_s_b1']:.0f} | {speed['eager']['images_per_s']:.0f} "
                f"| {speed['onnxruntime']['images_per_s_b1']:.0f} | {speed['onnxruntime']['images_per_s']:.0f} "
                f"| {'n/a' if memory is None else f'{memory:.0f}'} "
            )
        lines.append(
            f"| {r}x{r} | {name} | {_mean_std(s['jaccard_mean'], s['jaccard_std'])} | {_mean_std(s['dice_mean'], s['dice_std'])} "
            f"| {per_class} | {s['seeds']} {cost}| {s['train_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def run_jaccard(run: dict) -> float:
    return float(np.nanmean(run["jaccard"]))


def paired_effect(runs: dict, key: str, against: str) -> dict | None:
    """The change of mean foreground Jaccard from the runs ``against`` (``variant@r``) to the runs ``key``, seed by
    seed over the seeds both have: mean and sample std (ddof=1) of the differences, in how many seeds ``key`` was
    higher, the differences; None without a common seed."""
    seeds = sorted(int(k.split("#")[1]) for k in runs if k.split("#")[0] == key and f"{against}#{k.split('#')[1]}" in runs)
    if not seeds:
        return None
    differences = [run_jaccard(runs[f"{key}#{seed}"]) - run_jaccard(runs[f"{against}#{seed}"]) for seed in seeds]
    return {
        "seeds": len(seeds),
        "delta_jaccard_mean": float(np.mean(differences)),
        "delta_jaccard_std": seed_std(differences),
        "higher_in": int(sum(d > 0 for d in differences)),
        "delta_jaccard_per_seed": [float(d) for d in differences],
    }


def paired_effects(results: dict, against: str = "head") -> dict[str, dict]:
    """Per ``variant@r`` other than ``against``: the change of mean foreground Jaccard from ``against@r`` seed by
    seed (paired): the mean and sample std (ddof=1) of the per-seed differences, and in how many seeds it was
    higher."""
    runs = results["runs"]
    effects = {}
    for key in sorted({k.split("#")[0] for k in runs}):
        name, r = key.split("@")
        if name == against:
            continue
        effect = paired_effect(runs, key, f"{against}@{r}")
        if effect is not None:
            effects[key] = effect
    return effects


def format_ablation_table(results: dict, effects: dict, against: str = "head") -> str:
    """One row per variant (the one-change ablations first): its paired effect on the mean foreground Jaccard at
    every input size of the sweep."""
    if not effects:
        return f"(no variant ran beside `{against}` with the same seeds)\n"
    sizes = sorted({int(k.split("@")[1]) for k in effects})
    names = [n for n in VARIANTS if any(k.split("@")[0] == n for k in effects)]
    names.sort(key=lambda n: not VARIANTS[n].factor)
    header = "| variant | what it changes from `" + against + "` | " + " | ".join(
        f"{r}x{r}: ΔJaccard (paired mean ± std), higher in" for r in sizes) + " |"
    lines = [header, "|---|---|" + "---|" * len(sizes)]
    for name in names:
        cells = []
        for r in sizes:
            e = effects.get(f"{name}@{r}")
            cells.append("-" if e is None else f"{_signed(e['delta_jaccard_mean'], e['delta_jaccard_std'])}, {e['higher_in']}/{e['seeds']}")
        lines.append(f"| {name} | {VARIANTS[name].description} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _signed(mean: float, std: float | None) -> str:
    return f"{mean:+.3f}" if std is None else f"{mean:+.3f} ± {std:.3f}"


def _plot_quality_vs_throughput(results: dict, summary: dict, path: str) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in VARIANTS:
        if VARIANTS[name].factor:
            continue
        keys = [k for k in _ordered_keys(summary) if k.split("@")[0] == name and k in results["speed"]]
        if not keys:
            continue
        x = [results["speed"][k]["onnxruntime"]["images_per_s"] for k in keys]
        y = [summary[k]["jaccard_mean"] for k in keys]
        err = [summary[k]["jaccard_std"] or 0.0 for k in keys]
        axis.errorbar(x, y, yerr=err, marker="*" if name == "reference" else "o", capsize=3, label=name)
        for xi, yi, k in zip(x, y, keys):
            axis.annotate(k.split("@")[1], (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("ONNX Runtime throughput, batch 32, CPU (images/s)")
    axis.set_ylabel("mean foreground Jaccard at 256x256")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_examples(results: dict, data: SweepData, work_dir: str, path: str) -> None:
    config = results["config"]
    sizes = sorted({int(k.split("@")[1].split("#")[0]) for k in results["runs"] if not k.startswith("reference")})
    r = sizes[0]
    volume = max((int((v["label"] > 0).sum()), i) for i, v in enumerate(data.val_volumes))[1]
    chosen = data.val_volumes[volume]
    labels = torch.as_tensor(chosen["label"])  # (L, H, W, D)
    index = int((labels > 0).flatten(0, 2).sum(0).argmax())
    one_slice = {"image": chosen["image"][..., index : index + 1], "label": chosen["label"][..., index : index + 1]}
    truth = labels[..., index].float()
    panels = [("input (256x256, channel 0)", torch.as_tensor(chosen["image"])[0, ..., index].float()),
              ("ground truth", truth.amax(0) if data.multilabel else truth[0])]
    for name, variant in VARIANTS.items():
        size = variant.input_size or r
        key = f"{name}@{size}#0"
        if variant.factor or key not in results["runs"]:
            continue
        weights = os.path.join(work_dir, results["runs"][key]["model_file"])
        if not os.path.isfile(weights):  # a run carried over from another work folder (its JSON, not its weights)
            print(f"examples: {key} left out ({weights}: no such file)")
            continue
        files = SETTINGS[config["setting"]] + variant.config_files
        parser = run_parser(bundle_for(config["dataset"], size, variant.any_size), files, {**run_overrides(config, 0), "input_size": size})
        network = parser.get_parsed_content("network_def")
        network.load_state_dict(torch.load(weights, weights_only=True))
        logits = predict_volume(network.eval(), parser, one_slice)[0]
        prediction = (logits.sigmoid() > 0.5).float().sum(0) if data.multilabel else logits.argmax(0).float()
        panels.append((f"{name} @ {size}x{size}", prediction))
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for axis, (title, picture) in zip(np.atleast_1d(axes), panels):
        axis.imshow(picture.numpy(), cmap="gray" if title.startswith("input") else "viridis", interpolation="nearest")
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_reports(results: dict, data: SweepData, work_dir: str) -> None:
    summary = aggregate(results)
    results["summary"] = summary
    results["paired_vs_head"] = paired_effects(results)
    table = format_sweep_table(results, summary)
    with open(os.path.join(work_dir, "sweep.md"), "w") as f:
        f.write(table)
    ablation = format_ablation_table(results, results["paired_vs_head"])
    with open(os.path.join(work_dir, "ablation.md"), "w") as f:
        f.write(ablation)
    _plot_quality_vs_throughput(results, summary, os.path.join(work_dir, "quality_vs_throughput.png"))
    _plot_examples(results, data, work_dir, os.path.join(work_dir, "examples.png"))
    print(table)
    print(ablation)
