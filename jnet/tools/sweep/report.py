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
from .train import REFERENCE, VARIANTS, build_network, predict_slices  # noqa: E402

__all__ = ["aggregate", "format_sweep_table", "write_reports"]


def aggregate(results: dict) -> dict[str, dict]:
    """Per ``variant@r``: mean and standard deviation over seeds of the mean foreground Jaccard and Dice, and
    the per-class means."""
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
            "jaccard_std": float(np.nanstd(jaccard.mean(axis=1))),
            "dice_mean": float(np.nanmean(dice.mean(axis=1))),
            "dice_std": float(np.nanstd(dice.mean(axis=1))),
            "jaccard_per_class": [float(v) for v in np.nanmean(jaccard, axis=0)],
            "dice_per_class": [float(v) for v in np.nanmean(dice, axis=0)],
            "train_s": float(np.mean([r["train_s"] for r in runs])),
        }
    return summary


def _ordered_keys(summary: dict) -> list[str]:
    def order(key: str) -> tuple[int, int]:
        name, r = key.split("@")
        names = list(VARIANTS) + [REFERENCE.name]
        return int(r), names.index(name) if name in names else len(names)

    return sorted(summary, key=order)


def format_sweep_table(results: dict, summary: dict) -> str:
    lines = [
        "| input | variant | Jaccard (mean fg) | Dice (mean fg) | Jaccard per class | seeds | parameters | added "
        "| MACs (M) | eager b1 img/s | eager b32 img/s | ORT b1 img/s | ORT b32 img/s | peak MB b32 | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in _ordered_keys(summary):
        s, speed = summary[key], results["speed"].get(key, {})
        name, r = key.split("@")
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
            f"| {r}x{r} | {name} | {s['jaccard_mean']:.3f} ± {s['jaccard_std']:.3f} | {s['dice_mean']:.3f} ± {s['dice_std']:.3f} "
            f"| {per_class} | {s['seeds']} {cost}| {s['train_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _plot_quality_vs_throughput(results: dict, summary: dict, path: str) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in list(VARIANTS) + [REFERENCE.name]:
        keys = [k for k in _ordered_keys(summary) if k.split("@")[0] == name and k in results["speed"]]
        if not keys:
            continue
        x = [results["speed"][k]["onnxruntime"]["images_per_s"] for k in keys]
        y = [summary[k]["jaccard_mean"] for k in keys]
        err = [summary[k]["jaccard_std"] for k in keys]
        axis.errorbar(x, y, yerr=err, marker="*" if name == REFERENCE.name else "o", capsize=3, label=name)
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


def _plot_examples(results: dict, data: SweepData, work_dir: str, features: int, path: str) -> None:
    sizes = sorted({int(k.split("@")[1].split("#")[0]) for k in results["runs"] if not k.startswith(REFERENCE.name)})
    r = sizes[0]
    foreground = [(int((labels > 0).sum()), v) for v, labels in enumerate(data.val_labels)]
    volume = max(foreground)[1]
    labels = data.val_labels[volume]
    index = int((labels > 0).flatten(1).sum(1).argmax())
    image = data.val_images[volume][index : index + 1]
    panels = [("input (256x256, channel 0)", image[0, 0].float()), ("ground truth", labels[index].float().amax(0) if data.multilabel else labels[index, 0].float())]
    for name in list(VARIANTS) + [REFERENCE.name]:
        variant = VARIANTS.get(name, REFERENCE)
        size = 256 if variant.full_resolution else r
        weights = os.path.join(work_dir, f"{name}@{size}#0.pt")
        if not os.path.isfile(weights):
            continue
        network = build_network(variant, image.shape[1], data.num_classes, size, features)
        network.load_state_dict(torch.load(weights, weights_only=True))
        logits = predict_slices(network.eval(), image, size, variant)[0]
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


def write_reports(results: dict, data: SweepData, work_dir: str, features: int) -> None:
    summary = aggregate(results)
    results["summary"] = summary
    table = format_sweep_table(results, summary)
    with open(os.path.join(work_dir, "sweep.md"), "w") as f:
        f.write(table)
    _plot_quality_vs_throughput(results, summary, os.path.join(work_dir, "quality_vs_throughput.png"))
    _plot_examples(results, data, work_dir, features, os.path.join(work_dir, "examples.png"))
    print(table)
