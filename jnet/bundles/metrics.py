"""A bundle's evaluation figures as ``metadata.json``'s ``eval_metrics``: MetricsSaver's summary CSVs, the class
names they score, the entry (mean and per-class Dice / Jaccard)."""

from __future__ import annotations

import csv
import os

__all__ = ["read_metric_summary", "metric_class_names", "eval_metrics_entry", "evaluation_entry"]


def read_metric_summary(path: str, class_names: list[str]) -> dict[str, float]:
    """Per-class means from a MetricsSaver ``*_summary.csv`` (rows ``class0``, ``class1``, ..., ``mean``)."""
    with open(path) as f:
        rows = {row["class"]: float(row["mean"]) for row in csv.DictReader(f)}
    values = {name: rows[f"class{k}"] for k, name in enumerate(class_names)}
    values["mean"] = sum(values.values()) / len(values)
    return values


def metric_class_names(output_channels: dict, include_background: bool) -> list[str]:
    """The channels the bundle's metrics score: ``output_channels`` (metadata's ``channel_def``), background
    (channel ``"0"``) left out unless ``include_background`` (sigmoid bundles score every channel)."""
    return [name for key, name in output_channels.items() if include_background or str(key) != "0"]


def eval_metrics_entry(dice: dict[str, float], jaccard: dict[str, float], names: list[str]) -> dict[str, float]:
    """``{"mean_dice", "mean_jaccard", "<class>_dice", "<class>_jaccard", ...}`` rounded to 4 decimals."""
    entry = {"mean_dice": round(dice["mean"], 4), "mean_jaccard": round(jaccard["mean"], 4)}
    for name in names:
        key = name.lower().replace(" ", "_")
        entry[f"{key}_dice"] = round(dice[name], 4)
        entry[f"{key}_jaccard"] = round(jaccard[name], 4)
    return entry


def evaluation_entry(eval_dir: str, names: list[str]) -> dict[str, float]:
    """The entry of the ``val_mean_dice`` / ``val_mean_jaccard`` summaries that ``evaluate.json`` wrote to ``eval_dir``."""
    dice = read_metric_summary(os.path.join(eval_dir, "val_mean_dice_summary.csv"), names)
    jaccard = read_metric_summary(os.path.join(eval_dir, "val_mean_jaccard_summary.csv"), names)
    return eval_metrics_entry(dice, jaccard, names)
