"""Publish a finished sweep (and a bench run): ``docs/results.md`` and its plots, the sweep's figures as the
bundles' ``eval_metrics``, and the Jetson estimates of ``docs/jetson.md`` - every number from the JSON files the
``sweep`` and ``bench`` verbs wrote, nothing typed by hand."""

from __future__ import annotations

import inspect
import json
import os
import shutil

from jnet.tools.bench.bundles import SHARE_KEYS, SHARE_TARGET, under_nano_target
from jnet.bundles.matrix import bundle_specs
from jnet.bundles.render import generate_bundles
from jnet.tools.bench.table import write_bundles_table
from jnet.tools.eval_metrics import metric_class_names

from .run import run_sweep

__all__ = ["publish_results", "target_checks", "format_results_page", "ESTIMATES_BEGIN", "ESTIMATES_END"]

ESTIMATES_BEGIN = "<!-- BEGIN estimates: written by `python -m jnet publish`; do not edit by hand -->"
ESTIMATES_END = "<!-- END estimates -->"
ADDED_PARAMETERS_TARGET = 200
ORT_OVER_EAGER_TARGET = 1.5
OVER_REFERENCE_TARGET = 20.0


def _quality_checks(summary: dict) -> list[tuple[str, bool, str]]:
    """The head against ``baseline`` and ``bilinear`` at 16 and 32: a win by more than the seed standard deviation."""
    checks = []
    for r in (16, 32):
        head = summary.get(f"head@{r}")
        if head is None:
            continue
        for rival in ("baseline", "bilinear"):
            other = summary.get(f"{rival}@{r}")
            if other is None:
                continue
            margin = head["jaccard_mean"] - other["jaccard_mean"]
            spread = max(head["jaccard_std"], other["jaccard_std"])
            checks.append((
                f"{r}x{r}: head beats {rival} in mean foreground Jaccard by more than the seed std",
                margin > spread,
                f"{head['jaccard_mean']:.3f} vs {other['jaccard_mean']:.3f}: +{margin:.3f} (std {spread:.3f}, {head['seeds']} seeds)",
            ))
    return checks


def _cost_checks(sweep: dict, bench: dict | None) -> list[tuple[str, bool, str]]:
    checks = []
    speed = sweep["speed"]
    head16, reference = speed.get("head@16"), speed.get("reference@256")
    if head16 and reference:
        for runtime in ("eager", "onnxruntime"):
            ratio = head16[runtime]["images_per_s"] / reference[runtime]["images_per_s"]
            checks.append((
                f"16x16 head network >= {OVER_REFERENCE_TARGET:.0f}x the batch-32 throughput of the 256x256 reference ({runtime})",
                ratio >= OVER_REFERENCE_TARGET,
                f"{head16[runtime]['images_per_s']:.0f} vs {reference[runtime]['images_per_s']:.1f} images/s: {ratio:.0f}x",
            ))
    if bench is None:
        return checks
    bundles = bench["bundles"]
    added = {name: v["head"]["added_parameters"] for name, v in bundles.items()}
    checks.append((
        f"the head adds at most {ADDED_PARAMETERS_TARGET} parameters in every bundle",
        max(added.values()) <= ADDED_PARAMETERS_TARGET,
        f"largest: {max(added.values())} ({max(added, key=added.get)})",
    ))
    shares = {(name, key): v["head"]["share_of_bilinear_throughput"][key] for name, v in bundles.items() for key in SHARE_KEYS}
    worst = min(shares, key=shares.get)
    checks.append((
        f"every bundle keeps >= {SHARE_TARGET:.0%} of the bilinear-output throughput (b1, b32, eager, ONNX Runtime)",
        shares[worst] >= SHARE_TARGET,
        f"lowest: {shares[worst]:.0%} ({worst[0]}, {worst[1]})",
    ))
    for name, variants in bundles.items():
        if not name.endswith("_16"):
            continue
        head = variants["head"]
        ratio = head["onnxruntime"]["images_per_s_b1"] / head["eager"]["images_per_s_b1"]
        checks.append((
            f"{name}: ONNX Runtime batch 1 >= {ORT_OVER_EAGER_TARGET}x PyTorch eager",
            ratio >= ORT_OVER_EAGER_TARGET,
            f"{head['onnxruntime']['images_per_s_b1']:.0f} vs {head['eager']['images_per_s_b1']:.0f} images/s: {ratio:.1f}x",
        ))
    return checks


def target_checks(sweep: dict, bench: dict | None = None) -> list[tuple[str, bool, str]]:
    """Every target of the sweep issue as ``(what, met, the numbers)``."""
    return _quality_checks(sweep["summary"]) + _cost_checks(sweep, bench)


def _sweep_command(config: dict) -> str:
    """The ``sweep`` command line that reproduces ``config``: the options that differ from the verb's defaults."""
    defaults = {name: p.default for name, p in inspect.signature(run_sweep).parameters.items()}
    parts = ["python -m jnet sweep", f"--dataset {config['dataset']}"]
    if not config["synthetic"]:
        parts.append(f"--dataset_dir {config['dataset_dir']}")
    if config.get("dataset_layout"):
        parts.append(f"--dataset_layout {config['dataset_layout']}")
    options = ("num_train", "data_seed") if config["synthetic"] else ()
    options += ("resolutions", "variants", "seeds", "single_seed_from", "reference", "iterations", "batch_size", "features")
    for name in options:
        value = config[name]
        if (list(value) if isinstance(value, (list, tuple)) else value) != (list(defaults[name]) if isinstance(defaults[name], tuple) else defaults[name]):
            parts.append(f"--{name} \"{value}\"" if isinstance(value, (list, tuple)) else f"--{name} {value}")
    return " ".join(parts)


def format_results_page(sweep: dict, bench: dict | None, sweep_table: str, wall_s: float | None = None) -> str:
    config = sweep["config"]
    data = (
        f"jnet's synthetic {config['dataset']} generator (seed {config['synthetic_generator']['seed']}, "
        f"{config['synthetic_generator']['num_train']} labelled volumes, Decathlon layout) - NOT the real dataset"
        if config["synthetic"] else f"`{config['dataset_dir']}`"
    )
    checks = target_checks(sweep, bench)
    lines = [
        "# Results: the resolution sweep",
        "",
        f"Generated by `python -m jnet publish` from the JSON of `{_sweep_command(config)}`"
        + (" and `python -m jnet bench`" if bench else "") + ". Data: " + data + ": "
        f"{config['train_slices']} training slices, {config['held_out_volumes']} held-out volumes (fold 0 of "
        f"{config['num_folds']}). Every run: {config['iterations']} iterations of batch {config['batch_size']}, Adam "
        f"{config['learning_rate']:g}, flips and 90-degree rotations, ELU-Net width {config['features']}; scored per "
        "held-out volume at 256x256 (foreground classes only, a class missing from a volume's ground truth left out of "
        f"that class's mean), then averaged over volumes; mean ± standard deviation over {config['seeds']} seeds (1 seed "
        f"from {config['single_seed_from']}x{config['single_seed_from']} up and for the 256x256 reference).",
        "",
        f"Machine: {config['machine']}" + (f"; the whole sweep took {wall_s / 60:.0f} min" if wall_s else "")
        + (f", and its inference cost was measured again on the idle machine with `--remeasure_speed True` "
           f"({sweep['remeasure_speed_s'] / 60:.0f} min)" if sweep.get("remeasure_speed_s") else "") + ".",
        "",
        "Variants: `baseline` - no head, trained at the input resolution against the downsampled ground truth, "
        "prediction upsampled bilinearly (the paper's comparison); `bilinear` - no head, logits upsampled bilinearly and "
        "trained against the 256x256 ground truth; `head` - this project's head (bilinear initialisation, class-wise, "
        "area-downsampled input, Dice + cross-entropy at every level); `head_paper` - the paper's recipe (random "
        "initialisation, output-end skip connections, BCE-with-logits per level with equal weights, nearest-neighbour "
        "input); `reference` - the backbone on the 256x256 input.",
        "",
        "## Targets",
        "",
        "| target | met | numbers |",
        "|---|---|---|",
    ]
    lines += [f"| {what} | {'yes' if met else '**no**'} | {numbers} |" for what, met, numbers in checks]
    lines += [
        "",
        "## Quality and cost",
        "",
        "Speed: CPU, all cores, batch-1 latency and batch-32 throughput of the whole network writing the 256x256 "
        "logits, PyTorch eager and ONNX Runtime; peak memory: the heap's peak during one batch-32 forward (a lower "
        "bound, `jnet/bench/memory.py`).",
        "",
        sweep_table.rstrip(),
        "",
        "![quality against throughput](results/quality_vs_throughput.png)",
        "",
        "Example predictions, one held-out slice (input at 256x256 before downsampling, ground truth, each variant at "
        "the smallest input size):",
        "",
        "![examples](results/examples.png)",
        "",
    ]
    if bench:
        lines += [
            "## Every bundle (`python -m jnet bench`)",
            "",
            "Each bundle's network with the head against the same network with a plain bilinear output (both write the "
            "256x256 logits), seeded random weights (speed does not depend on them).",
            "",
            bench["table"].rstrip(),
            "",
        ]
    return "\n".join(lines) + "\n"


def _eval_metrics_entries(sweep: dict, configs_dir: str) -> dict[str, dict]:
    """The sweep's ``head`` figures as ``eval_metrics`` of the bundles of its dataset and input sizes."""
    entries = {}
    summary = sweep["summary"]
    for spec in bundle_specs(configs_dir):
        key = f"head@{spec.input_size}"
        if spec.dataset != sweep["config"]["dataset"] or key not in summary:
            continue
        s = summary[key]
        entry = {"mean_dice": round(s["dice_mean"], 4), "mean_jaccard": round(s["jaccard_mean"], 4)}
        for name, dice, jaccard in zip(metric_class_names(spec), s["dice_per_class"], s["jaccard_per_class"]):
            label = name.lower().replace(" ", "_")
            entry[f"{label}_dice"] = round(dice, 4)
            entry[f"{label}_jaccard"] = round(jaccard, 4)
        entries[spec.name] = entry
    return entries


def _update_eval_metrics(sweep: dict, configs_dir: str) -> list[str]:
    path = os.path.join(configs_dir, "eval_metrics.json")
    measured = json.load(open(path)) if os.path.isfile(path) else {}
    entries = _eval_metrics_entries(sweep, configs_dir)
    if not entries:
        return []
    config = sweep["config"]
    data = "synthetic data in the Decathlon layout, not the real dataset; " if config["synthetic"] else ""
    sources = {}
    for name in entries:
        seeds = sweep["summary"][f"head@{name.rsplit('_', 1)[1]}"]["seeds"]
        sources[name] = (
            f"{_sweep_command(config)} (docs/results.md): the head variant, {'1 seed' if seeds == 1 else f'mean over {seeds} seeds'}, "
            f"{config['iterations']} iterations of batch {config['batch_size']}, {config['held_out_volumes']} held-out "
            f"volumes at 256x256; {data}{config['machine']}."
        )
    measured.setdefault("_sources", {}).update(sources)
    measured.update(entries)
    with open(path + ".tmp", "w") as f:
        json.dump(measured, f, indent=4)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return sorted(entries)


def _update_jetson_estimates(bench: dict, jetson_page: str) -> None:
    rows = [
        f"From `python -m jnet bench` ({bench['machine']}): {bench['jetson_assumption']}. ESTIMATES, not measurements: "
        "no figure here has been measured on a Jetson. Batch 1, the network alone.",
        "",
        "| bundle | MACs (M) | Jetson Nano est. images/s | Jetson Orin Nano est. images/s |",
        "|---|---|---|---|",
    ]
    for name, variants in bench["bundles"].items():
        head = variants["head"]
        nano = head["jetson_estimate_images_per_s"]["jetson_nano"]
        flag = f" **({under_nano_target(nano)})**" if under_nano_target(nano) else ""
        rows.append(f"| {name} | {head['macs'] / 1e6:.1f} | {nano:.0f}{flag} | {head['jetson_estimate_images_per_s']['jetson_orin_nano']:.0f} |")
    text = open(jetson_page).read()
    start, end = text.index(ESTIMATES_BEGIN) + len(ESTIMATES_BEGIN), text.index(ESTIMATES_END)
    with open(jetson_page, "w") as f:
        f.write(text[:start] + "\n" + "\n".join(rows) + "\n" + text[end:])


def _other_dataset_section(sweep: dict, table: str) -> str:
    config = sweep["config"]
    variants = sorted({key.split("@")[0] for key in sweep["summary"]})
    return "\n".join([
        f"## {config['dataset']}: `{_sweep_command(config)}` ({', '.join(variants)})",
        "",
        f"{config['train_slices']} training slices, {config['held_out_volumes']} held-out volumes, {config['iterations']} "
        f"iterations of batch {config['batch_size']}" + (", synthetic data" if config["synthetic"] else "") + "; the source "
        "of these bundles' `eval_metrics`.",
        "",
        table.rstrip(),
        "",
    ])


def publish_results(
    sweep_dir: str = "sweep_output",
    bench_dir: str | None = "bench_output",
    docs_dir: str = "docs",
    configs_dir: str = "configs",
    bundles_dir: str = "bundles",
    other_sweep_dirs: tuple[str, ...] = (),
) -> dict:
    """Write ``docs/results.md`` (+ ``docs/results/``), the sweeps' ``eval_metrics`` into ``configs/eval_metrics.json``
    and the bundles generated from it, and (with a bench run) the estimates of ``docs/jetson.md``. ``sweep_dir`` is
    the full comparison; ``other_sweep_dirs`` (e.g. a head-only sweep of another dataset) add a section and the
    ``eval_metrics`` of their bundles."""
    sweep = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    bench = None
    if bench_dir and os.path.isfile(os.path.join(bench_dir, "bench.json")):
        bench = json.load(open(os.path.join(bench_dir, "bench.json")))
        bench["table"] = open(os.path.join(bench_dir, "bench.md")).read()
    figures = os.path.join(docs_dir, "results")
    os.makedirs(figures, exist_ok=True)
    for name in ("quality_vs_throughput.png", "examples.png", "sweep.json"):
        shutil.copyfile(os.path.join(sweep_dir, name), os.path.join(figures, name))
    wall = sweep.get("wall_s")
    page = format_results_page(sweep, bench, open(os.path.join(sweep_dir, "sweep.md")).read(), wall)
    updated = _update_eval_metrics(sweep, configs_dir)
    for other_dir in other_sweep_dirs:
        other = json.load(open(os.path.join(other_dir, "sweep.json")))
        page += "\n" + _other_dataset_section(other, open(os.path.join(other_dir, "sweep.md")).read())
        updated += _update_eval_metrics(other, configs_dir)
    with open(os.path.join(docs_dir, "results.md"), "w") as f:
        f.write(page)
    if bench:
        _update_jetson_estimates(bench, os.path.join(docs_dir, "jetson.md"))
    generate_bundles(configs_dir, bundles_dir)
    write_bundles_table(configs_dir, bundles_dir, os.path.join(docs_dir, "bundles.md"))
    return {"checks": target_checks(sweep, bench), "eval_metrics_from_sweep": updated}
