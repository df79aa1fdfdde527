"""Render every bundle of ``bundles/`` from the single source in ``configs/``: the templates' slots filled with each
dataset profile's values and the matrix's sizes, the metadata, the README and the licence files."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil

import jnet

from .large_files import LARGE_FILES, large_files_yml
from .matrix import BundleSpec, bundle_specs, head_levels, load_json

__all__ = [
    "SLOT", "filled_configs", "metadata", "render_bundle", "generate_bundles", "provenance", "measured_metrics",
    "LEARNING_CURVE", "learning_curves", "training_time_section",
]

BASE_CONFIGS = ("train.json", "inference.json")  # hold the per-bundle values at their top level
OVERRIDE_CONFIGS = (
    "evaluate.json", "train_baseline.json", "train_bilinear.json", "inference_trt.json",
    "multi_gpu_train.json", "multi_gpu_evaluate.json",
)  # merged on top, copied as they are
ABLATION_CONFIGS = ("train_baseline.json", "train_bilinear.json")  # per-size bundles only: they replace the head
ANY_SIZE_OVERLAYS = "any_size"  # configs/templates/any_size/: what makes a bundle resolution-switchable (issue 16)
ANY_SIZE_BASE = "base.json"  # the overlay of both BASE_CONFIGS; every other overlay is that of its namesake
PACKAGE_NAME = "jnet-lowres"
SLOT = "<filled by python -m jnet generate>"
LEARNING_CURVE = os.path.join("docs", "results", "learning_curve.json")  # beside configs/: python -m jnet learning_curve
ALL_BACKGROUND_WARNING = (
    "**Warning:** a model trained for fewer epochs can write all-background masks (or masks missing a class) that "
    "look valid - right shape, spacing and affine, no error. Before using `models/model.pt`, check `val_mean_dice` "
    "and the per-class Dice of the training's last validations, or evaluate them (the Evaluate command above); on real data, measure "
    "again (the default `--epochs` is 100)."
)  # a template value that each bundle's profile / the matrix provides


def _write_json(path: str, content: dict) -> None:
    with open(path, "w") as f:
        json.dump(content, f, indent=4)
        f.write("\n")


def _fill(template: dict, values: dict, source: str, profile: str) -> dict:
    """The template with every slot (a top-level value :data:`SLOT`) replaced by ``values``; a slot that
    ``values`` does not fill is refused with both files named. Other keys keep the template's value."""
    missing = [key for key, value in template.items() if value == SLOT and key not in values]
    if missing:
        raise ValueError(f"{profile}: no value for the slot(s) {', '.join(missing)} of {source}.")
    return {key: values[key] if value == SLOT else value for key, value in template.items()}


def merge_overlay(config: dict, overlay: dict, source: str, after: str = "operating_size") -> dict:
    """``config`` with ``overlay``'s keys set: a key ``a#b`` sets ``b`` inside ``config["a"]`` (MONAI's id path;
    ``a`` must exist), a key ``+a#b`` puts its list in front of the list at ``a#b``, a plain key replaces the value in
    place or, when new, is inserted after the key ``after`` (else appended)."""
    merged, new = dict(config), {}
    for key, value in overlay.items():
        if key.startswith("+"):  # "+a#b": the overlay's list goes in front of the list at a#b (handlers run in order)
            *parents, last = key[1:].split("#")
            node = merged[parents[0]] = copy.deepcopy(merged.get(parents[0])) if parents else merged
            for part in parents[1:]:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or not isinstance(node.get(last), list) or not isinstance(value, list):
                raise ValueError(f"{source}: {key} names no list of the config it overlays, or its value is not a list.")
            node[last] = value + node[last]
            continue
        *parents, last = key.split("#")
        if not parents:
            if key in merged:
                merged[key] = value
            else:
                new[key] = value
            continue
        node = merged[parents[0]] = copy.deepcopy(merged.get(parents[0]))
        for part in parents[1:]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ValueError(f"{source}: {key} names no section of the config it overlays.")
        node[last] = value
    if not new:
        return merged
    keys = list(merged)
    position = keys.index(after) + 1 if after in keys else len(keys)
    return {**{k: merged[k] for k in keys[:position]}, **new, **{k: merged[k] for k in keys[position:]}}


def _config_names(spec: BundleSpec) -> tuple[str, ...]:
    overrides = tuple(name for name in OVERRIDE_CONFIGS if not (spec.switchable and name in ABLATION_CONFIGS))
    return BASE_CONFIGS + overrides


def _overlays(spec: BundleSpec, templates: str, name: str) -> list[tuple[str, dict]]:
    """The any-size overlays of config ``name``, in merge order, with their paths: ``base.json`` for a base config,
    then the one named ``name``; none for a per-size bundle."""
    if not spec.switchable:
        return []
    files = ([ANY_SIZE_BASE] if name in BASE_CONFIGS else []) + [name]
    paths = [(f"configs/templates/{ANY_SIZE_OVERLAYS}/{file}", os.path.join(templates, ANY_SIZE_OVERLAYS, file)) for file in files]
    return [(source, load_json(path)) for source, path in paths if os.path.isfile(path)]


def filled_configs(spec: BundleSpec, templates: str) -> dict[str, dict]:
    """Every config file of ``spec``'s bundle: the base configs with their slots filled, the overrides as they
    are; a switchable bundle's (issue 16) with the overlays of ``configs/templates/any_size/`` merged and without
    the head-replacing ablations. A profile ``config`` key that fills no slot of any template is refused (a
    misspelt key would vanish)."""
    values, profile = spec.config_values(), f"configs/datasets/{spec.dataset}.json"
    configs, used = {}, set()
    for name in _config_names(spec):
        content = load_json(os.path.join(templates, name))
        for source, overlay in _overlays(spec, templates, name):
            content = merge_overlay(content, overlay, source)
        if name in BASE_CONFIGS:
            used |= {key for key, value in content.items() if value == SLOT}
            content = _fill(content, values, f"configs/templates/{name}", profile)
        configs[name] = content
    unused = sorted(set(spec.profile["config"]) - used)
    if unused:
        raise ValueError(
            f"{profile}: config key(s) {', '.join(unused)} fill no slot of {' or '.join(BASE_CONFIGS)} "
            f"(a slot is a top-level key whose template value is {SLOT!r})."
        )
    return configs


def measured_metrics(configs_dir: str) -> dict:
    """``configs/eval_metrics.json``: every bundle's measured ``eval_metrics`` and their sources."""
    path = os.path.join(configs_dir, "eval_metrics.json")
    return load_json(path) if os.path.isfile(path) else {}


def provenance(name: str, measured: dict) -> str:
    """Where a bundle's ``eval_metrics`` come from: a sweep (``_sources``, written by ``python -m jnet publish``), else
    ``python -m jnet eval_metrics`` (``_provenance``)."""
    return measured.get("_sources", {}).get(name) or measured["_provenance"]


def _results_section(spec: BundleSpec, measured: dict) -> str:
    metrics = measured.get(spec.name)
    if not metrics:
        return "Not measured yet (`python -m jnet eval_metrics` fills `eval_metrics` in `configs/metadata.json`)."
    rows = ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
    return "\n".join(rows) + "\n\nSource: " + provenance(spec.name, measured)


def learning_curves(configs_dir: str) -> dict:
    """``docs/results/learning_curve.json`` beside ``configs_dir`` (written by ``python -m jnet learning_curve``), or
    ``{}``."""
    path = os.path.join(os.path.dirname(os.path.abspath(configs_dir)), LEARNING_CURVE)
    return load_json(path) if os.path.isfile(path) else {}


def _dice(point: dict) -> str:
    per_class = ", ".join(f"{name} {value:.3f}" for name, value in point["dice_per_class"].items())
    return f"`val_mean_dice` {point['val_mean_dice']:.3f} ({per_class})"


def training_time_section(name: str, curves: dict) -> str:
    """The README's "How long to train" text of bundle ``name`` from ``curves`` (:func:`learning_curves`): the
    epochs for a usable model, the rule, the metric there and at the last epoch, the machine and the command; "not
    measured" where ``curves`` has no entry for ``name``. Never a number that is not in ``curves``."""
    entry = curves.get("bundles", {}).get(name)
    if not entry:
        return (
            f"Not measured: `{LEARNING_CURVE}` of the jnet-lowres repository has no entry for this bundle "
            f"(`python -m jnet learning_curve --bundles \"['{name}']\"` measures it).\n\n" + ALL_BACKGROUND_WARNING
        )
    settings, usable, last = entry["settings"], entry["usable_epoch"], entry["last"]
    epochs = settings["epochs"]
    if usable is None:
        verdict = f"**not reached in {epochs} epochs** (no validated epoch met the rule)"
    else:
        verdict = f"**{usable} epochs** ({_dice(entry['at_usable'])} at epoch {usable})"
    calls = curves.get("calls", [])
    notes = [call["note"] for call in calls if call.get("command") == entry.get("call") and call.get("note")]
    rederived = [call["command"] for call in calls if "--rederive" in call.get("command", "") and name in call.get("bundles", [])]
    lines = [
        f"Measured on {curves['data']}: one run of `configs/train.json` for {epochs} epochs, validated every "
        f"{settings['val_interval']}:",
        "",
        f"- Epochs for a usable model: {verdict}.",
        f"- At the last epoch ({last['epoch']}): {_dice(last)}; best `val_mean_dice` {entry['best']['val_mean_dice']:.3f} "
        f"at epoch {entry['best']['epoch']}, the weights `models/model.pt` keeps.",
        f"- Rule: {curves['rule']}. Metric: {curves['metric']}.",
        f"- The epoch is one of a run of {epochs} epochs, whose learning rate follows the bundle's cosine schedule over "
        f"those {epochs} epochs (a run of fewer epochs anneals sooner); one training seed.",
        f"- Machine: {entry['machine']}; {entry['train_s']:.0f} s for the {epochs} epochs" + (f" ({notes[0]})" if notes else "") + ".",
        f"- Command, from the repository root (the per-class file it names holds `per_class_override` of the JSON): "
        f"`{entry['command']}`, run by `{entry['call']}`"
        + (f"; the usable epoch derived again from the stored curve with the rule above by `{rederived[-1]}`" if rederived else "") + ".",
        "",
        ALL_BACKGROUND_WARNING,
    ]
    return "\n".join(lines)


def sizes_text(sizes: tuple[int, ...]) -> str:
    return ", ".join(f"{s}x{s}" for s in sizes)


def _description(spec: BundleSpec) -> str:
    r, out = spec.input_size, spec.output_size
    if spec.switchable:
        return (
            f"J-Net, resolution-switchable: one ELU-Net backbone and one {spec.head_levels}-level upscaling head serve "
            f"{sizes_text(spec.sizes)} inputs from the same weights (a size r runs the head's last log2({out}/r) levels), "
            f"trained on every size in one run (iterations per size in proportion to the head levels it runs; one set of "
            f"BatchNorm statistics per size, recomputed from the weights before each save) with a multi-stage loss "
            f"against the {out}x{out} ground truth, predicting at {out}x{out}; {r}x{r} by default, another with "
            f"--input_size (or auto --min_images_per_s N). "
        )
    return (
        f"J-Net: an ELU-Net backbone on a {r}x{r} input with a {spec.head_levels}-level upscaling head, "
        f"trained with a multi-stage loss against the {out}x{out} ground truth, predicting at {out}x{out}. "
    )


ANY_SIZE_SWEEPS = os.path.join("docs", "results")  # beside configs/: the sweeps with `any` runs (python -m jnet sweep)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def any_size_table(spec: BundleSpec, configs_dir: str) -> str:
    """The quality/speed table of a switchable bundle's one network at every size, from each sweep JSON of
    ``docs/results/`` whose ``any`` runs were trained by THIS bundle (their command names it), beside that sweep's
    per-size ``head`` networks: mean foreground Jaccard over the seeds (paired difference on the seeds both have) and
    eager images/s at batch 32. "Not measured" where no sweep has such runs. Never a number not in the files."""
    folder = os.path.join(os.path.dirname(os.path.abspath(configs_dir)), ANY_SIZE_SWEEPS)
    tables = []
    for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not (file.startswith("sweep") and file.endswith(".json")):
            continue
        sweep = load_json(os.path.join(folder, file))
        runs, speed = sweep.get("runs", {}), sweep.get("speed", {})
        ours = {k: v for k, v in runs.items() if k.startswith("any@") and f"bundles/{spec.name} " in v.get("command", "")}
        if not ours:
            continue
        config = sweep["config"]
        rows = ["| input | this network: mean fg Jaccard | per-size head network (its seeds) | paired difference, the seeds both have | this network images/s | head images/s |",
                "|---|---|---|---|---|---|"]
        for r in sorted({int(k.split("@")[1].split("#")[0]) for k in ours}):
            seeds = sorted(k.split("#")[1] for k in ours if k.startswith(f"any@{r}#"))
            jaccard = lambda run: _mean(run["jaccard"])  # noqa: E731 (a run's per-class list: its mean foreground Jaccard)
            head = {seed: jaccard(runs[f"head@{r}#{seed}"]) for seed in seeds if f"head@{r}#{seed}" in runs}
            any_j = [jaccard(ours[f"any@{r}#{seed}"]) for seed in seeds]
            paired = [jaccard(ours[f"any@{r}#{seed}"]) - head[seed] for seed in head]
            rate = lambda key: f"{speed[key]['eager']['images_per_s']:.0f}" if key in speed else "-"  # noqa: E731
            rows.append(
                f"| {r}x{r} | {_mean(any_j):.3f} ({len(any_j)} seeds) | "
                + (f"{_mean(list(head.values())):.3f} ({len(head)} seeds) | {_mean(paired):+.3f} ({len(paired)}) |" if head else "- | - |")
                + f" {rate(f'any@{r}')} | {rate(f'head@{r}')} |"
            )
        trainings = sorted({round(v["train_s"]) for v in ours.values()})
        ran = [re.search(r"--epochs (\d+)", v["command"]) for v in ours.values()]  # what the commands trained
        epochs = sorted({int(match.group(1)) if match else config["epochs"] for match in ran})
        head_s = [v["train_s"] for k, v in runs.items() if k.startswith("head@")]
        data = {"anatomy": "real-anatomy volumes (Colin27 T1 with AAL labels, deformed per case; `python -m jnet synthetic --dataset anatomy`)"}.get(
            config["dataset"], "synthetic volumes" if config.get("synthetic") else "volumes")
        tables.append("\n".join(rows) + (
            f"\n\nSource: `{ANY_SIZE_SWEEPS}/{file}` of the jnet-lowres repository (`python -m jnet sweep`, variants "
            f"{', '.join(config['variants'])}): {config['train_volumes']} training and {config['held_out_volumes']} held-out "
            f"{data} ({config['dataset']}), {config['epochs']} epochs per per-size network and "
            f"{', '.join(map(str, epochs))} for this one: one training per seed ({', '.join(str(t) for t in trainings)} s"
            + (f"; the per-size head runs {_mean(head_s):.0f} s on average" if head_s else "")
            + f"); {config['machine']}. Images/s: PyTorch eager, batch 32, network only, that machine."
        ))
    if not tables:
        return (f"Not measured: no sweep of `{ANY_SIZE_SWEEPS}/` in the jnet-lowres repository has `any` runs of this bundle "
                f"(`python -m jnet sweep --variants \"[head,any]\"` measures them).")
    return "\n\n".join(tables)


def metadata(spec: BundleSpec, matrix: dict, measured: dict | None = None) -> dict:
    """``configs/metadata.json``: a switchable bundle's ``network_data_format`` is its default size's, and
    ``supported_input_sizes`` / ``default_input_size`` name its operating points."""
    profile, versions = spec.profile, matrix["versions"]
    measured = measured or {}
    source = f" eval_metrics: {provenance(spec.name, measured)}" if spec.name in measured else ""
    r, out = spec.input_size, spec.output_size
    sizes = {"supported_input_sizes": list(spec.sizes), "default_input_size": r} if spec.switchable else {}
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
        "version": matrix["version"],
        "changelog": matrix["changelog"],
        "monai_version": versions["monai_version"],
        "pytorch_version": versions["pytorch_version"],
        "numpy_version": versions["numpy_version"],
        "required_packages_version": {PACKAGE_NAME: jnet.__version__, **versions["required_packages_version"]},
        "supported_apps": {},
        "name": f"{profile['title']} low-resolution ({'any of ' + sizes_text(spec.sizes) if spec.switchable else f'{r}x{r}'}) segmentation",
        "task": profile["task"],
        "description": _description(spec) + "Predictions are written at each input volume's original shape, spacing and affine." + source,
        **sizes,
        "authors": matrix["authors"],
        "copyright": matrix["copyright"],
        "data_source": profile["data_source"],
        "data_type": "nibabel",
        "image_classes": profile["image_classes"],
        "label_classes": profile["label_classes"],
        "pred_classes": ", ".join(f"{k} {v}" for k, v in profile["output_channels"].items()),
        "eval_metrics": measured.get(spec.name, {}),
        "intended_use": "Research only. Not a medical device; not for diagnostic use.",
        "references": matrix["references"] + [profile["dataset_reference"]],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": profile["modality"],
                    "num_channels": profile["config"]["in_channels"],
                    "spatial_shape": [r, r],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": profile["input_channels"],
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(profile["output_channels"]),
                    "spatial_shape": [out, out],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": profile["output_channels"],
                }
            },
        },
    }


def _readme_fields(spec: BundleSpec, templates: str, configs_dir: str) -> dict:
    """The README fields that differ between per-size and switchable bundles: what the input is, the operating
    points section and table, the ablations, the TensorRT plan and the kit's ONNX files."""
    r, out = spec.input_size, spec.output_size
    common = {"r": r, "out": out, "levels": head_levels(r, out), "dataset_dir": spec.profile["config"]["dataset_dir"]}
    if not spec.switchable:
        with open(os.path.join(templates, "README_ablations.md")) as f:
            ablations = f.read().format(**common)
        return {**common, "input_desc": f"{r}x{r}", "operating_points": "", "ablations": ablations, "trt_plan": "`models/model.pt.plan`",
                "kit_sizes": ""}
    with open(os.path.join(templates, ANY_SIZE_OVERLAYS, "operating_points.md")) as f:
        training, per_size = (load_json(os.path.join(templates, *path)) for path in ((ANY_SIZE_OVERLAYS, "train.json"), ("train.json",)))
        section = f.read().format(**common, all_levels=spec.head_levels, sizes=sizes_text(spec.sizes), size_list=", ".join(map(str, spec.sizes)),
                                  table=any_size_table(spec, configs_dir), batches=training["size_statistics_batches"],
                                  any_epochs=training["epochs"], epochs=per_size["epochs"], val_interval=training["val_interval"],
                                  epochs_factor=f"{training['epochs'] / per_size['epochs']:g}")
    others = [s for s in spec.sizes if s != r]
    kit = (
        f"\nThe kit holds one ONNX file per size from the one `models/model.pt`: `model.onnx` at {r}x{r} and "
        + ", ".join(f"`model_{s}.onnx`" for s in others)
        + " (each checked against PyTorch); the runner's `--input_size R` runs the kit's file for R "
        "(`python deploy/jnet_runner deploy/model.onnx ... --input_size 16`), and `build_engine.sh` builds `model.engine` and "
        + ", ".join(f"`model_{s}.engine`" for s in others) + ".\n"
    )
    return {**common, "input_desc": f"{sizes_text(spec.sizes)} (one network; {r}x{r} by default)", "operating_points": section,
            "ablations": "", "trt_plan": f"`models/model_{r}.pt.plan` (`models/model_<R>.pt.plan` for `--input_size R`)", "kit_sizes": kit}


def render_bundle(spec: BundleSpec, configs_dir: str, matrix: dict, bundle_dir: str) -> None:
    """Write one bundle (configs, docs, licence files) into ``bundle_dir``."""
    templates = os.path.join(configs_dir, "templates")
    os.makedirs(os.path.join(bundle_dir, "configs"), exist_ok=True)
    os.makedirs(os.path.join(bundle_dir, "docs"), exist_ok=True)
    for name, content in filled_configs(spec, templates).items():
        _write_json(os.path.join(bundle_dir, "configs", name), content)
    measured = measured_metrics(configs_dir)
    _write_json(os.path.join(bundle_dir, "configs", "metadata.json"), metadata(spec, matrix, measured))
    shutil.copyfile(os.path.join(templates, "logging.conf"), os.path.join(bundle_dir, "configs", "logging.conf"))
    shutil.copyfile(os.path.join(templates, "LICENSE"), os.path.join(bundle_dir, "LICENSE"))
    with open(os.path.join(bundle_dir, "docs", "data_license.txt"), "w") as f:
        f.write(spec.profile["data_license"] + "\n")
    with open(os.path.join(templates, "README.md")) as f:
        readme = f.read()
    fields = _readme_fields(spec, templates, configs_dir)
    fields.update({
        "name": spec.name,
        "title": spec.profile["title"],
        "layout": spec.profile["layout_help"],
        "in_channels": spec.profile["config"]["in_channels"],
        "channels": ", ".join(spec.profile["input_channels"].values()),
        "classes": ", ".join(f"{k} {v}" for k, v in spec.profile["output_channels"].items()),
        "version": matrix["version"],
        "results": _results_section(spec, measured),
        "training_time": training_time_section(spec.name, learning_curves(configs_dir)),
        "layout_option": spec.profile.get("layout_option", ""),
        "num_classes": len(spec.profile["output_channels"]),
        "activation": spec.profile["output_activation"],
    })
    with open(os.path.join(bundle_dir, "docs", "README.md"), "w") as f:
        f.write(readme.format(**fields))
    with open(os.path.join(bundle_dir, LARGE_FILES), "w") as f:
        weights = {"path": "models/model.pt", "url": "", "hash_val": "", "hash_type": "sha256"}
        f.write(large_files_yml([weights], {"url": "filled when trained weights are published; never committed to git"}))


def generate_bundles(configs_dir: str = "configs", bundles_dir: str = "bundles") -> list[str]:
    """(Re)write every bundle of the matrix into ``bundles_dir``; returns their names."""
    matrix = load_json(os.path.join(configs_dir, "matrix.json"))
    names = []
    for spec in bundle_specs(configs_dir):
        render_bundle(spec, configs_dir, matrix, os.path.join(bundles_dir, spec.name))
        names.append(spec.name)
    return names
