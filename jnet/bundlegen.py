"""Generate every bundle in ``bundles/`` from the single source in ``configs/`` (dataset profiles x resolutions)."""

from __future__ import annotations

import filecmp
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import jnet

__all__ = ["BundleSpec", "bundle_specs", "generate_bundles", "check_bundles", "render_bundle"]

BASE_CONFIGS = ("train.json", "inference.json")  # hold the per-bundle values at their top level
OVERRIDE_CONFIGS = (
    "evaluate.json", "train_baseline.json", "train_bilinear.json", "inference_trt.json",
    "multi_gpu_train.json", "multi_gpu_evaluate.json",
)  # merged on top, copied as they are
PACKAGE_NAME = "jnet-lowres"


@dataclass(frozen=True)
class BundleSpec:
    """One dataset x input-resolution pairing."""

    dataset: str
    profile: dict
    input_size: int
    output_size: int

    @property
    def name(self) -> str:
        return f"{self.profile['bundle_prefix']}_{self.input_size}"

    @property
    def head_levels(self) -> int:
        return int(math.log2(self.output_size // self.input_size))

    def config_values(self) -> dict:
        """The top-level config keys that differ between bundles."""
        return {
            **self.profile["config"],
            "input_size": self.input_size,
            "output_size": self.output_size,
            "head_levels": self.head_levels,
        }


def _load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, content: dict) -> None:
    with open(path, "w") as f:
        json.dump(content, f, indent=4)
        f.write("\n")


def bundle_specs(configs_dir: str) -> Iterator[BundleSpec]:
    matrix = _load_json(os.path.join(configs_dir, "matrix.json"))
    for dataset in matrix["datasets"]:
        profile = _load_json(os.path.join(configs_dir, "datasets", f"{dataset}.json"))
        for size in matrix["resolutions"]:
            if matrix["output_size"] % size or (matrix["output_size"] // size) & (matrix["output_size"] // size - 1):
                raise ValueError(f"input size {size} must divide {matrix['output_size']} by a power of two.")
            yield BundleSpec(dataset, profile, int(size), int(matrix["output_size"]))


def _fill(template: dict, values: dict) -> dict:
    """The template with the values of its existing top-level keys replaced (templates hold the keys they use)."""
    return {key: values.get(key, value) for key, value in template.items()}


def _eval_metrics(configs_dir: str) -> dict:
    path = os.path.join(configs_dir, "eval_metrics.json")
    return _load_json(path) if os.path.isfile(path) else {}


def provenance(name: str, measured: dict) -> str:
    """Where a bundle's ``eval_metrics`` come from: a sweep (``_sources``, written by ``python -m jnet publish``), else
    ``python -m jnet eval_metrics`` (``_provenance``)."""
    return measured.get("_sources", {}).get(name, measured["_provenance"])


def _results_section(spec: BundleSpec, measured: dict) -> str:
    metrics = measured.get(spec.name)
    if not metrics:
        return "Not measured yet (`python -m jnet eval_metrics` fills `eval_metrics` in `configs/metadata.json`)."
    rows = ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
    return "\n".join(rows) + "\n\nSource: " + provenance(spec.name, measured)


def metadata(spec: BundleSpec, matrix: dict, measured: dict | None = None) -> dict:
    profile, versions = spec.profile, matrix["versions"]
    measured = measured or {}
    source = f" eval_metrics: {provenance(spec.name, measured)}" if spec.name in measured else ""
    r, out = spec.input_size, spec.output_size
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
        "version": matrix["version"],
        "changelog": matrix["changelog"],
        "monai_version": versions["monai_version"],
        "pytorch_version": versions["pytorch_version"],
        "numpy_version": versions["numpy_version"],
        "required_packages_version": {PACKAGE_NAME: jnet.__version__, **versions["required_packages_version"]},
        "supported_apps": {},
        "name": f"{profile['title']} low-resolution ({r}x{r}) segmentation",
        "task": profile["task"],
        "description": (
            f"J-Net: an ELU-Net backbone on a {r}x{r} input with a {spec.head_levels}-level upscaling head, "
            f"trained with a multi-stage loss against the {out}x{out} ground truth, predicting at {out}x{out}. "
            "Predictions are written at each input volume's original shape, spacing and affine." + source
        ),
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


def render_bundle(spec: BundleSpec, configs_dir: str, matrix: dict, bundle_dir: str) -> None:
    """Write one bundle (configs, docs, licence files) into ``bundle_dir``."""
    templates = os.path.join(configs_dir, "templates")
    os.makedirs(os.path.join(bundle_dir, "configs"), exist_ok=True)
    os.makedirs(os.path.join(bundle_dir, "docs"), exist_ok=True)
    values = spec.config_values()
    for name in BASE_CONFIGS + OVERRIDE_CONFIGS:
        content = _load_json(os.path.join(templates, name))
        _write_json(os.path.join(bundle_dir, "configs", name), _fill(content, values) if name in BASE_CONFIGS else content)
    measured = _eval_metrics(configs_dir)
    _write_json(os.path.join(bundle_dir, "configs", "metadata.json"), metadata(spec, matrix, measured))
    shutil.copyfile(os.path.join(templates, "logging.conf"), os.path.join(bundle_dir, "configs", "logging.conf"))
    shutil.copyfile(os.path.join(templates, "LICENSE"), os.path.join(bundle_dir, "LICENSE"))
    with open(os.path.join(bundle_dir, "docs", "data_license.txt"), "w") as f:
        f.write(spec.profile["data_license"] + "\n")
    with open(os.path.join(templates, "README.md")) as f:
        readme = f.read()
    fields = {
        "name": spec.name,
        "title": spec.profile["title"],
        "r": spec.input_size,
        "out": spec.output_size,
        "levels": spec.head_levels,
        "layout": spec.profile["layout_help"],
        "dataset_dir": spec.profile["config"]["dataset_dir"],
        "in_channels": spec.profile["config"]["in_channels"],
        "channels": ", ".join(spec.profile["input_channels"].values()),
        "classes": ", ".join(f"{k} {v}" for k, v in spec.profile["output_channels"].items()),
        "version": matrix["version"],
        "results": _results_section(spec, measured),
        "layout_option": spec.profile.get("layout_option", ""),
        "num_classes": len(spec.profile["output_channels"]),
        "activation": spec.profile["output_activation"],
    }
    with open(os.path.join(bundle_dir, "docs", "README.md"), "w") as f:
        f.write(readme.format(**fields))
    with open(os.path.join(bundle_dir, "large_files.yml"), "w") as f:
        f.write(
            "large_files:\n"
            '  - path: "models/model.pt"\n'
            '    url: ""  # filled when trained weights are published; never committed to git\n'
            '    hash_val: ""\n'
            '    hash_type: "sha256"\n'
        )


def bundles_table(configs_dir: str, bundles_dir: str) -> str:
    """``docs/bundles.md``: every bundle with its input, output, parameters, added parameters and MACs."""
    from jnet.bench.macs import count_macs
    from jnet.bundle_io import bundle_network, count_parameters

    lines = [
        "# Bundles",
        "",
        "Generated by `python -m jnet generate` from `configs/` (parameters and MACs counted on the bundle's own",
        "`network_def`, batch 1, convolutions only; the head counted as the plain layers it is defined by).",
        "",
        "Quality: the bundle's `eval_metrics` (mean foreground Dice / Jaccard per held-out volume at 256x256), each with",
        "its source below the table - synthetic data in the real layout, not the real datasets.",
        "",
        "| bundle | dataset | input | output | head levels | parameters | added by the head | MACs (M) | head MACs (M) "
        "| Dice | Jaccard | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    measured = _eval_metrics(configs_dir)
    sources: list[str] = []
    for spec in bundle_specs(configs_dir):
        network = bundle_network(os.path.join(bundles_dir, spec.name))
        in_channels = spec.profile["config"]["in_channels"]
        shape = (1, in_channels, spec.input_size, spec.input_size)
        total, backbone = count_macs(network, shape), count_macs(network.backbone, shape)
        added = count_parameters(network) - count_parameters(network.backbone)
        quality = "| - | - | - |"
        if spec.name in measured:
            source = provenance(spec.name, measured)
            sources += [] if source in sources else [source]
            metrics = measured[spec.name]
            quality = f"| {metrics['mean_dice']:.3f} | {metrics['mean_jaccard']:.3f} | [{sources.index(source) + 1}] |"
        lines.append(
            f"| {spec.name} | {spec.profile['title']} | {spec.input_size}x{spec.input_size}x{in_channels} "
            f"| {spec.output_size}x{spec.output_size}x{len(spec.profile['output_channels'])} | {spec.head_levels} "
            f"| {count_parameters(network):,} | {added} | {total / 1e6:.1f} | {(total - backbone) / 1e6:.2f} {quality}"
        )
    lines += [""] + [f"[{i}] {source}" for i, source in enumerate(sources, 1)]
    return "\n".join(lines) + "\n"


def generate_bundles(configs_dir: str = "configs", bundles_dir: str = "bundles", table_file: str | None = None) -> list[str]:
    """(Re)write every bundle of the matrix into ``bundles_dir`` (and the bundle table to ``table_file``)."""
    matrix = _load_json(os.path.join(configs_dir, "matrix.json"))
    names = []
    for spec in bundle_specs(configs_dir):
        render_bundle(spec, configs_dir, matrix, os.path.join(bundles_dir, spec.name))
        names.append(spec.name)
    if table_file:
        with open(table_file, "w") as f:
            f.write(bundles_table(configs_dir, bundles_dir))
    return names


def _tree_differences(expected: str, actual: str, ignore: tuple[str, ...] = ("models", "eval")) -> list[str]:
    differences = []
    compare = filecmp.dircmp(expected, actual, ignore=list(ignore))
    differences += [os.path.join(actual, n) + " is missing" for n in compare.left_only]
    differences += [os.path.join(actual, n) + " is not generated" for n in compare.right_only]
    _, mismatch, errors = filecmp.cmpfiles(expected, actual, compare.common_files, shallow=False)
    differences += [os.path.join(actual, n) + " differs" for n in mismatch + errors]
    for sub in compare.common_dirs:
        differences += _tree_differences(os.path.join(expected, sub), os.path.join(actual, sub), ignore)
    return differences


def check_bundles(configs_dir: str = "configs", bundles_dir: str = "bundles", table_file: str | None = None) -> list[str]:
    """What in ``bundles_dir`` (and ``table_file``) differs from a fresh generation (empty when in sync)."""
    with tempfile.TemporaryDirectory() as fresh:
        fresh_bundles = os.path.join(fresh, "bundles")
        fresh_table = os.path.join(fresh, "bundles.md")
        names = generate_bundles(configs_dir, fresh_bundles, fresh_table if table_file else None)
        fresh = fresh_bundles
        differences = []
        for name in names:
            if not os.path.isdir(os.path.join(bundles_dir, name)):
                differences.append(f"{os.path.join(bundles_dir, name)} is missing")
                continue
            differences += _tree_differences(os.path.join(fresh, name), os.path.join(bundles_dir, name))
        extra = sorted(set(os.listdir(bundles_dir)) - set(names)) if os.path.isdir(bundles_dir) else []
        differences += [f"{os.path.join(bundles_dir, n)} is not in the matrix" for n in extra]
        if table_file and not (os.path.isfile(table_file) and filecmp.cmp(fresh_table, table_file, shallow=False)):
            differences.append(f"{table_file} differs")
    return differences
