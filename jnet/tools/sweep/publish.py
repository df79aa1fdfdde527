"""Publish a finished sweep (and a bench run): ``docs/results.md`` and its plots, the sweep's figures as the
bundles' ``eval_metrics``, and the Jetson estimates of ``docs/jetson.md`` - every number from the JSON files the
``sweep`` and ``bench`` verbs wrote, nothing typed by hand."""

from __future__ import annotations

import inspect
import json
import os
import shutil

import numpy as np

from jnet.tools.bench.bundles import SHARE_KEYS, SHARE_TARGET, under_nano_target
from jnet.bundles.matrix import bundle_specs
from jnet.bundles.render import generate_bundles
from jnet.tools.bench.table import jetson_range, write_bundles_table
from jnet.tools.eval_metrics import metric_class_names

from .report import format_ablation_table, format_sweep_table, paired_effect
from .run import run_sweep
from .train import VARIANTS

__all__ = ["publish_results", "render_results_page", "target_checks", "format_results_page", "ESTIMATES_BEGIN", "ESTIMATES_END"]

ESTIMATES_BEGIN = "<!-- BEGIN estimates: written by `python -m jnet publish`; do not edit by hand -->"
ESTIMATES_END = "<!-- END estimates -->"
ADDED_PARAMETERS_TARGET = 200
ORT_OVER_EAGER_TARGET = 1.5
OVER_REFERENCE_TARGET = 20.0


def _quality_checks(sweep: dict) -> list[tuple[str, bool, str]]:
    """The head against ``baseline`` and ``bilinear`` at 16 and 32, seed by seed: higher in every paired seed and
    by a mean margin larger than the sample std (ddof=1) of the paired differences."""
    checks = []
    paired = sweep.get("paired_vs_head", {})
    for r in (16, 32):
        for rival in ("baseline", "bilinear"):
            effect = paired.get(f"{rival}@{r}")
            if effect is None:
                continue
            margin, spread = -effect["delta_jaccard_mean"], effect["delta_jaccard_std"] or 0.0
            head_higher = effect["seeds"] - effect["higher_in"]
            checks.append((
                f"{r}x{r}: head beats {rival} in mean foreground Jaccard in every paired seed, by more than the std of the differences",
                head_higher == effect["seeds"] and margin > spread,
                f"+{margin:.3f} (std {spread:.3f}), head higher in {head_higher}/{effect['seeds']} seeds" if margin >= 0 else
                f"{margin:.3f} (std {spread:.3f}), head higher in {head_higher}/{effect['seeds']} seeds",
            ))
    return checks


ANY_SIZE_MARGIN = 0.01  # issue 16: the one network within 1 point of mean foreground Jaccard of each per-size head


def _any_size_checks(sweep: dict) -> list[tuple[str, bool, str]]:
    """Issue 16's targets for the ``any`` variant against the per-size ``head`` networks: at every size, its mean
    foreground Jaccard (mean over the paired seeds) at most 1 point below the head's; its one training at most 1.5x
    the training time of one per-size head run (the mean over the sizes' runs); its throughput at each size at least
    95 % of the head's (eager, batch 32)."""
    runs, speed, checks = sweep.get("runs", {}), sweep.get("speed", {}), []
    sizes = sorted({int(k.split("@")[1].split("#")[0]) for k in runs if k.startswith("any@")})
    for r in sizes:
        effect = paired_effect(runs, f"any@{r}", f"head@{r}")
        if effect is None:
            continue
        delta = effect["delta_jaccard_mean"]
        checks.append((
            f"{r}x{r}: the one any-size network within {100 * ANY_SIZE_MARGIN:.0f} point of mean foreground Jaccard of the {r}x{r} head network",
            delta >= -ANY_SIZE_MARGIN,
            f"{delta:+.3f} (std {effect['delta_jaccard_std'] or 0.0:.3f}), any higher in {effect['higher_in']}/{effect['seeds']} seeds",
        ))
    trainings = {k.split("#")[1]: run["train_s"] for k, run in runs.items() if k.startswith("any@")}
    head_runs = [run["train_s"] for k, run in runs.items() if k.startswith("head@")]
    if trainings and head_runs:
        ratio = float(np.mean(list(trainings.values()))) / float(np.mean(head_runs))
        per_size = {r: [run["train_s"] for k, run in runs.items() if k.startswith(f"head@{r}#")] for r in sizes}
        checks.append((
            "the one training costs at most 1.5x the wall time of one per-size head run",
            ratio <= 1.5,
            f"{np.mean(list(trainings.values())):.0f} s per any training vs {np.mean(head_runs):.0f} s per head run "
            f"(mean over its {len(head_runs)} runs at {', '.join(str(s) for s in sizes)}; by size "
            f"{' / '.join(f'{np.mean(t):.0f}' if t else '-' for t in per_size.values())} s): {ratio:.2f}x",
        ))
    for r in sizes:
        ours, theirs = speed.get(f"any@{r}"), speed.get(f"head@{r}")
        if ours and theirs:
            share = ours["eager"]["images_per_s"] / theirs["eager"]["images_per_s"]
            checks.append((f"{r}x{r}: throughput at least 95 % of the {r}x{r} head network's (eager, batch 32)", share >= 0.95,
                           f"{ours['eager']['images_per_s']:.0f} vs {theirs['eager']['images_per_s']:.0f} images/s: {100 * share:.1f} %"))
    return checks


def _cross_size_checks(sweep: dict) -> list[tuple[str, bool, str]]:
    """The paper's BraTS claim: the head at ``r`` reaches the ``baseline`` at ``2r``, seed by seed (same seeds): met when
    the head at ``r`` is at least as high in every paired seed (so the mean difference, head@r minus baseline@2r,
    is not negative either)."""
    checks = []
    runs = sweep.get("runs", {})
    for r in (16, 32):
        effect = paired_effect(runs, f"head@{r}", f"baseline@{2 * r}")
        if effect is None:
            continue
        checks.append((
            f"{r}x{r} head reaches the {2 * r}x{2 * r} baseline: at least as high in every paired seed",
            all(d >= 0 for d in effect["delta_jaccard_per_seed"]),
            f"{effect['delta_jaccard_mean']:+.3f} (std {effect['delta_jaccard_std'] or 0.0:.3f}), head@{r} higher in "
            f"{effect['higher_in']}/{effect['seeds']} seeds",
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
    return _quality_checks(sweep) + _cross_size_checks(sweep) + _cost_checks(sweep, bench)


def _sweep_command(config: dict) -> str:
    """The ``sweep`` command line that reproduces ``config``: the options that differ from the verb's defaults."""
    defaults = {name: p.default for name, p in inspect.signature(run_sweep).parameters.items()}
    parts = ["python -m jnet sweep", f"--dataset {config['dataset']}"]
    if not config["synthetic"]:
        parts.append(f"--dataset_dir {config['dataset_dir']}")
    if config.get("dataset_layout"):
        parts.append(f"--dataset_layout {config['dataset_layout']}")
    options = ("num_train", "data_seed") if config["synthetic"] else ()
    options += ("setting", "resolutions", "variants", "factor_resolutions", "seeds", "single_seed_from", "reference",
                "epochs", "val_interval", "batch_size", "features")
    for name in options:
        value, default = config[name], defaults[name]
        if isinstance(value, (list, tuple)):
            if list(value) != list(default):
                parts.append(f"--{name} \"[{','.join(str(v) for v in value)}]\"")
        elif value != default:
            parts.append(f"--{name} {value}")
    return " ".join(parts)


def _run_description(config: dict) -> str:
    bundle = "`configs/train.json` of the bundle at that input size"
    extra = ", ".join(f"--{name} {config[name]}" for name in ("batch_size", "features") if config.get(name) is not None)
    return (
        f"Every run is {bundle} merged with the variant's override files (`configs/ablation/`), trained by MONAI's "
        f"`SupervisedTrainer` in-process with the bundle's own network, loss, Adam + cosine schedule, slice sampling, "
        f"augmentation and input downsampling (the same `model.pt` as `python -m monai.bundle run`: "
        f"`tests/test_sweep.py`): {config['epochs']} epochs (`--epochs {config['epochs']} --val_interval "
        f"{config['val_interval']} --num_workers 0 --seed <seed>`{', ' + extra if extra else ''}; an any-size variant's "
        f"`--epochs` and `--val_interval` times its epochs factor, as its `_any` bundle trains), the model with the "
        f"best validation Dice kept as the bundle keeps it, and scored on that same held-out fold (fold 0 of "
        f"{config['num_folds']}, which also chose the epoch) per volume at 256x256 (foreground classes only, a class "
        "missing from a volume's ground truth left out of that class's mean), then averaged over volumes. Each run's "
        "exact command is in `docs/results/sweep.json` (`runs.<variant>@<size>#<seed>.command`)."
    )


def _data_description(config: dict) -> str:
    if config["synthetic"] and config["dataset"] == "anatomy":
        return (f"real MR anatomy of one subject (Colin27 T1 + AAL labels: insula and striatum, from Debian's mricron-data) "
                f"deformed per case by `jnet synthetic --dataset anatomy` (seed {config['synthetic_generator']['seed']}, "
                f"{config['synthetic_generator']['num_train']} labelled volumes, Task05 layout) - NOT prostate")
    if config["synthetic"]:
        return (f"jnet's synthetic {config['dataset']} generator (seed {config['synthetic_generator']['seed']}, "
                f"{config['synthetic_generator']['num_train']} labelled volumes, Decathlon layout) - NOT the real dataset")
    return f"`{config['dataset_dir']}`"


def _factor_sentences(sweep: dict) -> list[str]:
    """One sentence per one-change ablation: what it changes and what it did, at every size, seed by seed."""
    paired = sweep.get("paired_vs_head", {})
    sentences = []
    for name, variant in VARIANTS.items():
        effects = [(key.split("@")[1], e) for key, e in paired.items() if key.split("@")[0] == name]
        if not variant.factor or not effects:
            continue
        parts = []
        for r, e in sorted(effects, key=lambda item: int(item[0])):
            spread = "" if e["delta_jaccard_std"] is None else f" ± {e['delta_jaccard_std']:.3f}"
            parts.append(f"{e['delta_jaccard_mean']:+.3f}{spread} at {r}x{r} (higher than `head` in {e['higher_in']} of {e['seeds']} seeds)")
        sentences.append(f"- `{name}` ({variant.description}): mean foreground Jaccard {'; '.join(parts)}.")
    return sentences


def format_results_page(
    sweep: dict, bench: dict | None, others: list[dict] = (), volume_memory: list[dict] | None = None, end_to_end: dict | None = None
) -> str:
    """docs/results.md from the sweeps' and the bench's JSON alone (``tests/test_published_tables.py`` re-renders
    the committed page from ``docs/results/*.json``)."""
    config = sweep["config"]
    checks = target_checks(sweep, bench)
    wall_s = sweep.get("wall_s")
    lines = [
        "# Results: the resolution sweep and the ablation",
        "",
        f"Generated by `python -m jnet publish` from the JSON of `{_sweep_command(config)}`"
        + (" and `python -m jnet bench`" if bench else "") + " (`docs/results/`). Data: " + _data_description(config) + ": "
        f"{config['train_volumes']} training volumes ({config['train_slices']} slices), {config['held_out_volumes']} "
        "held-out volumes.",
        "",
        _run_description(config) + f" Mean ± sample standard deviation (ddof=1) over {config['seeds']} seeds (1 seed "
        f"from {config['single_seed_from']}x{config['single_seed_from']} up and for the 256x256 reference: no ±).",
        "",
        f"Machine: {config['machine']}" + (f"; the whole sweep took {wall_s / 60:.0f} min" if wall_s else "")
        + (f", and its inference cost was measured again on the idle machine with `--remeasure_speed True` "
           f"({sweep['remeasure_speed_s'] / 60:.0f} min)" if sweep.get("remeasure_speed_s") else "") + ".",
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
        "bound, `jnet/tools/bench/memory.py`).",
        "",
        format_sweep_table(sweep, sweep["summary"]).rstrip(),
        "",
        "![quality against throughput](results/quality_vs_throughput.png)",
        "",
        "Example predictions, one held-out slice (input at 256x256 before downsampling, ground truth, each variant at "
        "the smallest input size):",
        "",
        "![examples](results/examples.png)",
        "",
        "## Ablation: one change at a time from `head`",
        "",
        "Each row is `head` with one override file, trained with the same seeds; the effect is the change of the mean "
        "foreground Jaccard seed by seed (paired: variant minus `head` with the same seed), mean ± sample std of those "
        "differences, and in how many seeds the variant scored higher.",
        "",
        format_ablation_table(sweep, sweep["paired_vs_head"]).rstrip(),
        "",
        "What each factor does here:",
        "",
        *_factor_sentences(sweep),
        "",
    ]
    for other in others:
        lines += [_other_sweep_section(other, format_sweep_table(other, other["summary"]), format_ablation_table(other, other["paired_vs_head"])), ""]
    if bench:
        from jnet.tools.bench.table import render_bench_table

        lines += [
            "## Every bundle (`python -m jnet bench`)",
            "",
            "Each bundle's network with the head against the same network with a plain bilinear output (both write the "
            "256x256 logits), seeded random weights (speed does not depend on them).",
            "",
            render_bench_table(bench).rstrip(),
            "",
        ]
    if volume_memory:
        from jnet.tools.bench.volume_memory import VolumeMemory, format_volume_memory_table

        lines += [
            "## Peak memory of one large volume (`python -m jnet bench`, or alone `python -m jnet bench_memory`)",
            "",
            "One 512x512xDx2 float32 `.nii.gz` segmented by `prostate_mri_lowres_32` (random weights): the bundle's "
            "`python -m monai.bundle run --config_file configs/inference.json --num_workers 0` and the exported kit's "
            "standalone runner (ONNX Runtime), each the kernel's peak RSS of that one process, at D slices and at 64; "
            "the slope between them is the peak per MB of input, the constant what the line gives at no input. Issue 17's "
            "bound: peak under 2x the decompressed input plus a constant.",
            "",
            format_volume_memory_table([VolumeMemory(**row) for row in volume_memory]).rstrip(),
            "",
        ]
    if end_to_end:
        from jnet.tools.bench.end_to_end import EndToEnd, format_end_to_end_table

        lines += [
            "## End to end: the bundle against the standalone runner (`python -m jnet bench`, or alone `python -m jnet bench_end_to_end`)",
            "",
            "The synthetic prostate test volumes (seed 0) segmented by `prostate_mri_lowres_32` (seeded random weights) "
            "with `python -m monai.bundle run --config_file configs/inference.json --dataset_dir ...` (its defaults: 2 data "
            "workers, slices in batches of 32, PyTorch eager) and with the exported kit's runner on the `imagesTs` folder "
            "(ONNX Runtime), each one command from start-up to the last mask; peak RSS is the kernel's `ru_maxrss` of the "
            "command and the children it waited for: the largest single process, not the sum (the bundle's 2 data workers "
            "are processes of their own). Issue 19's target: the bundle within 1.5x of the runner's wall time.",
            "",
            format_end_to_end_table(EndToEnd(**end_to_end)).rstrip(),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def _eval_metrics_entries(sweep: dict, configs_dir: str) -> dict[str, dict]:
    """The sweep's ``head`` figures (the bundles' own ``train.json``) as ``eval_metrics`` of the bundles of its
    dataset and input sizes, and its ``any`` figures at the default size as those of the ``_any`` bundle; a sweep in
    another setting (the paper's binary task) describes no bundle, and a sweep with ``any`` runs describes only the
    ``_any`` bundle (its ``head`` runs are the reference of the comparison; the main sweep stays their source)."""
    entries = {}
    summary = sweep["summary"]
    if sweep["config"].get("setting", "bundle") != "bundle":
        return entries
    has_any = any(VARIANTS[name].any_size for name in sweep["config"]["variants"] if name in VARIANTS)
    for spec in bundle_specs(configs_dir):
        key = _metrics_key(spec)
        if spec.dataset != sweep["config"]["dataset"] or key not in summary or spec.switchable != has_any:
            continue
        s = summary[key]
        entry = {"mean_dice": round(s["dice_mean"], 4), "mean_jaccard": round(s["jaccard_mean"], 4)}
        for name, dice, jaccard in zip(metric_class_names(spec), s["dice_per_class"], s["jaccard_per_class"]):
            label = name.lower().replace(" ", "_")
            entry[f"{label}_dice"] = round(dice, 4)
            entry[f"{label}_jaccard"] = round(jaccard, 4)
        entries[spec.name] = entry
    return entries


def _metrics_key(spec) -> str:
    """The sweep variant and size whose figures are ``spec``'s bundle's: ``head@r``, or ``any@<default>``."""
    return f"{'any' if spec.switchable else 'head'}@{spec.input_size}"


def _eval_metrics_source(sweep: dict, name: str, configs_dir: str = "configs") -> str:
    """How a bundle's ``eval_metrics`` were made: the bundle command of its runs, the seeds, the data."""
    config = sweep["config"]
    key = next(_metrics_key(spec) for spec in bundle_specs(configs_dir) if spec.name == name)
    seeds = sweep["summary"][key]["seeds"]
    command = sweep["runs"][f"{key}#0"]["command"].replace("--seed 0", "--seed <seed>" if seeds > 1 else "--seed 0")
    command = command.replace(f"--dataset_dir {config['dataset_dir']}", "--dataset_dir <DATA>")  # no machine's path
    command, scored, size = command.partition(" (scored with ")  # an any-size run: the size it was scored at, after the command
    if config["synthetic"]:
        generator = config["synthetic_generator"]
        data = (f"<DATA> = `python -m jnet synthetic --dataset {config['dataset']} --num_train {generator['num_train']} "
                f"--num_test 0 --seed {generator['seed']} --out_dir <DATA>`: synthetic data in the Decathlon layout "
                "(not the real dataset); ")
    else:
        data = f"<DATA> = the dataset folder `{os.path.basename(os.path.normpath(config['dataset_dir']))}`; "
    return (
        f"`{command}`{(' (scored with ' + size) if scored else ''} "
        f"({'mean over seeds ' + ', '.join(str(i) for i in range(seeds)) if seeds > 1 else 'seed 0'}): "
        f"models/model.pt (best validation Dice) scored on the {config['held_out_volumes']} held-out volumes of fold 0 "
        f"at 256x256; run by `{_sweep_command(config)}` (docs/results.md); {data}{config['machine']}."
    )


def _update_eval_metrics(sweep: dict, configs_dir: str) -> list[str]:
    path = os.path.join(configs_dir, "eval_metrics.json")
    measured = json.load(open(path)) if os.path.isfile(path) else {}
    entries = _eval_metrics_entries(sweep, configs_dir)
    if not entries:
        return []
    measured.setdefault("_sources", {}).update({name: _eval_metrics_source(sweep, name, configs_dir) for name in entries})
    measured.update(entries)
    if all(spec.name in measured["_sources"] for spec in bundle_specs(configs_dir)):
        measured.pop("_provenance", None)  # the eval_metrics verb's source line: no bundle's figures come from it now
    with open(path + ".tmp", "w") as f:
        json.dump(measured, f, indent=4)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return sorted(entries)


def _jetson_rows(bench: dict, measured: list[dict]) -> list[str]:
    """docs/jetson.md's generated block: the model's assumptions with their sources, every bundle's estimated range,
    and the measured rows (``jnet trtexec --run --record``) beside them."""
    model = bench["jetson_assumptions"]
    rows = [
        f"From `python -m jnet bench` ({bench['machine']}): {bench['jetson_model']}. ESTIMATES, not measurements, "
        "except the rows under \"Measured\". The network alone (no pre- or post-processing, no copies), fp16.",
        "",
        "| assumption | optimistic | pessimistic | source |",
        "|---|---|---|---|",
    ]
    for key, device in model["devices"].items():
        rows.append(f"| {device['name']} fp16 peak | {device['fp16_peak_flops'] / 1e9:.0f} GFLOP/s | same | {device['peak_source']} |")
        rows.append(f"| {device['name']} memory bandwidth | {device['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s | same | {device['bandwidth_source']} |")
    for field, label in (("compute_share", "share of the fp16 peak"), ("bandwidth_share", "share of the bandwidth"), ("kernel_floor_s", "launch floor per kernel")):
        for key, device in model["devices"].items():
            low, high = model["scenarios"][f"{key}/optimistic"][field], model["scenarios"][f"{key}/pessimistic"][field]
            text = (lambda v: f"{v * 1e6:.0f} us") if field == "kernel_floor_s" else (lambda v: f"{v:.0%}")
            rows.append(f"| {device['name']}: {label} | {text(low)} | {text(high)} | {model['sources'][field]} |")
    rows += [
        "",
        "Kernels and traffic are read from each bundle's exported ONNX graph by the fusion rule of "
        "`jnet/tools/bench/jetson.py` (`graph_cost`). images/s as pessimistic-optimistic; **flagged** where the "
        "pessimistic batch-1 Nano figure is under the paper's 20 images/s. The MAC-only column is the old model "
        "(compute at the optimistic share, no bandwidth, no launch floors): an upper bound the model never exceeds.",
        "",
        "| bundle | graph MACs (M) | kernels | activations MB/image | Nano b1 img/s | Nano b1 ms | Nano b32 img/s | Orin Nano b1 img/s | Orin Nano b32 img/s | Nano MAC-only img/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, variants in bench["bundles"].items():
        jetson = variants["head"]["jetson"]
        cost, nano, orin = jetson["cost"], jetson["jetson_nano"], jetson["jetson_orin_nano"]
        low = nano["pessimistic"]["b1_images_per_s"]
        flag = f" **({under_nano_target(low)})**" if under_nano_target(low) else ""
        rows.append(
            f"| {name} | {cost['macs'] / 1e6:.1f} | {cost['kernels']} | {cost['activation_bytes'] / 1e6:.2f} "
            f"| {jetson_range(nano, 'b1')}{flag} | {nano['optimistic']['b1_latency_ms']:.2f}-{nano['pessimistic']['b1_latency_ms']:.2f} "
            f"| {jetson_range(nano, 'b32')} | {jetson_range(orin, 'b1')} | {jetson_range(orin, 'b32')} | {nano['compute_only_images_per_s']:.0f} |"
        )
    rows += ["", "Measured (`python -m jnet trtexec KIT --run True --record docs/results/jetson_measured/<name>.json --device \"...\"`):", ""]
    if not measured:
        return rows + ["(none yet: no figure here has been measured on a Jetson)"]
    rows += ["| bundle | device | precision | b1 img/s | b1 ms | largest batch img/s |", "|---|---|---|---|---|---|"]
    for record in sorted(measured, key=lambda r: (r["bundle"], r["device"])):
        batches = sorted(record["measured"], key=int)
        one, top = record["measured"].get("1", {}), record["measured"][batches[-1]]
        latency = "n/a" if one.get("latency_ms") is None else f"{one['latency_ms']:.2f}"
        rows.append(f"| {record['bundle']} | {record['device']} | {record['precision']} | {one.get('images_per_s', float('nan')):.0f} | {latency} "
                    f"| {top['images_per_s']:.0f} (batch {batches[-1]}) |")
    return rows


JETSON_MEASURED_DIR = "jetson_measured"


def _measured_records(results_dir: str) -> list[dict]:
    folder = os.path.join(results_dir, JETSON_MEASURED_DIR)
    if not os.path.isdir(folder):
        return []
    return [json.load(open(os.path.join(folder, f))) for f in sorted(os.listdir(folder)) if f.endswith(".json")]


def _update_jetson_estimates(bench: dict, jetson_page: str, measured: list[dict] = ()) -> None:
    rows = _jetson_rows(bench, list(measured))
    text = open(jetson_page).read()
    start, end = text.index(ESTIMATES_BEGIN) + len(ESTIMATES_BEGIN), text.index(ESTIMATES_END)
    with open(jetson_page, "w") as f:
        f.write(text[:start] + "\n" + "\n".join(rows) + "\n" + text[end:])


TITLES = {"anatomy": "Real anatomy (Colin27 brain, prostate bundles)"}


def _other_sweep_section(sweep: dict, table: str, ablation: str) -> str:
    config = sweep["config"]
    title = {"paper": "the paper's own setting"}.get(config.get("setting"), TITLES.get(config["dataset"], config["dataset"]))
    if "any" in config["variants"]:
        title += ", one network for every input size (`_any` bundle vs the per-size `head`)"
    setting = (
        "The public J-Net code's task: one sigmoid channel for the whole gland (PZ and TZ merged), BCE-with-logits "
        "at every level, nearest-neighbour input downsampling for every variant (`configs/ablation/paper_setting.json`, "
        "merged before each variant's file). "
        if config.get("setting") == "paper" else ""
    )
    checks = _quality_checks(sweep) + _cross_size_checks(sweep) + _any_size_checks(sweep)
    return "\n".join([
        f"## {title}: `{_sweep_command(config)}`",
        "",
        setting + f"Data: {_data_description(config)}: {config['train_volumes']} training volumes, "
        f"{config['held_out_volumes']} held-out volumes, {config['epochs']} epochs"
        + ("; the source of these bundles' `eval_metrics`." if _eval_metrics_entries_possible(config) else "."),
        "",
        *(["| target | met | numbers |", "|---|---|---|"]
          + [f"| {what} | {'yes' if met else '**no**'} | {numbers} |" for what, met, numbers in checks] + [""] if checks else []),
        table.rstrip(),
        *(["", "Paired against `head` (variant minus `head`, seed by seed):", "", ablation.rstrip()] if sweep["paired_vs_head"] else []),
    ])


def _eval_metrics_entries_possible(config: dict) -> bool:
    """Whether a sweep's ``head`` runs describe the bundles (their ``eval_metrics``): the bundles' own setting, and
    not the any-size comparison (its head runs are a reference for the ``any`` rows, the main sweep stays the source)."""
    return (config.get("setting", "bundle") == "bundle" and "head" in config["variants"]
            and not any(VARIANTS[name].any_size for name in config["variants"] if name in VARIANTS)
            and config["dataset"] in ("prostate", "brats"))  # a sweep with any runs: the _any bundle's figures only


RESULTS_JSON = "sweep.json"
OTHER_SWEEP_JSON = "sweep_{name}.json"
BENCH_JSON = "bench.json"
VOLUME_MEMORY_JSON = "volume_memory.json"
END_TO_END_JSON = "end_to_end.json"
TRAINING_JSON = "training.json"


def render_results_page(results_dir: str) -> str:
    """docs/results.md from the JSON committed in ``results_dir`` (docs/results/): ``sweep.json``, the other sweeps'
    ``sweep_<name>.json`` (in name order) and ``bench.json`` where present."""
    sweep = json.load(open(os.path.join(results_dir, RESULTS_JSON)))
    others = [json.load(open(os.path.join(results_dir, f))) for f in sorted(os.listdir(results_dir))
              if f.startswith("sweep_") and f.endswith(".json")]
    bench_path = os.path.join(results_dir, BENCH_JSON)
    bench = json.load(open(bench_path)) if os.path.isfile(bench_path) else None
    memory_path = os.path.join(results_dir, VOLUME_MEMORY_JSON)
    volume_memory = json.load(open(memory_path)) if os.path.isfile(memory_path) else None
    end_to_end_path = os.path.join(results_dir, END_TO_END_JSON)
    end_to_end = json.load(open(end_to_end_path)) if os.path.isfile(end_to_end_path) else None
    return format_results_page(sweep, bench, others, volume_memory, end_to_end) + training_section(results_dir) + gpu_section(results_dir)


def training_section(results_dir: str) -> str:
    """The training speed of every bundle (``python -m jnet bench``'s ``training.json``), where ``results_dir`` holds it."""
    from jnet.tools.bench.training import format_training_table

    path = os.path.join(results_dir, TRAINING_JSON)
    if not os.path.isfile(path):
        return ""
    report = json.load(open(path))
    before = report.get("before")
    lines = [
        "", "## Training speed (`python -m jnet bench`, or alone `python -m jnet bench_training`)", "",
        "Slices per second of each bundle's own training step on one batch (its `configs/train.json` network, loss "
        "and optimizer; data loading not included), with the network in each memory format (the train config's "
        "`channels_last`; the bundles ship `true`).",
    ]
    if before:
        lines.append(f"Before: the same measurement at commit {before['commit']} ({before['how']}).")
    return "\n".join(lines + ["", format_training_table(report).rstrip(), ""])


DEVICE_CHECK_JSON = "device_check.json"  # make device-check's report, copied in from the GPU machine's $OUT


def gpu_section(results_dir: str) -> str:
    """The GPU path's section: the device check's table where ``results_dir`` holds its report, else that the CUDA
    paths are untested."""
    from jnet.tools.device_check import format_device_table

    lines = ["", "## The GPU path", ""]
    path = os.path.join(results_dir, DEVICE_CHECK_JSON)
    if not os.path.isfile(path):
        lines += [
            "**Untested.** No session of this project has been lent a GPU machine yet, so the CUDA paths (AMP training, "
            "`nccl`, the head's GPU path, the pre/post-processing around a GPU network) have never run. The check that "
            "would run them is prepared: `make device-wheels` here, then `make device-check` on a CUDA machine with "
            "PyTorch (no internet needed; `jnet/tools/device_check.py`: two bundles, a 1-epoch training with `--amp True`, "
            "evaluation, inference compared with the CPU's masks, eager fp32/AMP images/s at batch 1 and 32); its "
            f"`device_check.json` goes to `docs/results/{DEVICE_CHECK_JSON}` and this section shows it.",
        ]
    else:
        lines.append(format_device_table(json.load(open(path))).rstrip())
    return "\n".join(lines) + "\n"


def publish_results(
    sweep_dir: str = "sweep_output",
    bench_dir: str | None = "bench_output",
    docs_dir: str = "docs",
    configs_dir: str = "configs",
    bundles_dir: str = "bundles",
    other_sweep_dirs: tuple[str, ...] = (),
) -> dict:
    """Copy the sweeps' and the bench's JSON (and the sweep's plots) into ``docs/results/``, render
    ``docs/results.md`` from them alone, write the ``head`` figures as ``eval_metrics`` into
    ``configs/eval_metrics.json`` and the bundles generated from it, and (with a bench run) the estimates of
    ``docs/jetson.md``. ``sweep_dir`` is the full comparison; ``other_sweep_dirs`` (another dataset, the paper's
    setting) add a section each and, for the bundles' own setting, the ``eval_metrics`` of their bundles."""
    sweep = json.load(open(os.path.join(sweep_dir, RESULTS_JSON)))
    figures = os.path.join(docs_dir, "results")
    os.makedirs(figures, exist_ok=True)
    for name in ("quality_vs_throughput.png", "examples.png", RESULTS_JSON):
        shutil.copyfile(os.path.join(sweep_dir, name), os.path.join(figures, name))
    for old in os.listdir(figures):  # the other sweeps of this publication only
        if old.startswith("sweep_") and old.endswith(".json"):
            os.remove(os.path.join(figures, old))
    bench = None
    if bench_dir and os.path.isfile(os.path.join(bench_dir, BENCH_JSON)):
        shutil.copyfile(os.path.join(bench_dir, BENCH_JSON), os.path.join(figures, BENCH_JSON))
        bench = json.load(open(os.path.join(bench_dir, BENCH_JSON)))
    for name in (VOLUME_MEMORY_JSON, END_TO_END_JSON, TRAINING_JSON):
        if bench_dir and os.path.isfile(os.path.join(bench_dir, name)):
            shutil.copyfile(os.path.join(bench_dir, name), os.path.join(figures, name))
    updated = _update_eval_metrics(sweep, configs_dir)
    for other_dir in other_sweep_dirs:
        other = json.load(open(os.path.join(other_dir, RESULTS_JSON)))
        name = os.path.basename(os.path.normpath(other_dir)).removeprefix("sweep_")
        shutil.copyfile(os.path.join(other_dir, RESULTS_JSON), os.path.join(figures, OTHER_SWEEP_JSON.format(name=name)))
        updated += _update_eval_metrics(other, configs_dir)
    with open(os.path.join(docs_dir, "results.md"), "w") as f:
        f.write(render_results_page(figures))
    if bench:
        _update_jetson_estimates(bench, os.path.join(docs_dir, "jetson.md"), _measured_records(figures))
    generate_bundles(configs_dir, bundles_dir)
    write_bundles_table(configs_dir, bundles_dir, os.path.join(docs_dir, "bundles.md"))
    return {"checks": target_checks(sweep, bench), "eval_metrics_from_sweep": updated}
