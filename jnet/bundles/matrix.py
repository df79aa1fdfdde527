"""The bundle matrix: every dataset profile of ``configs/datasets/`` at every input size of ``configs/matrix.json``,
and one resolution-switchable bundle per dataset serving every size of the matrix's ``any_size`` (``<prefix>_any``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["BundleSpec", "bundle_specs", "head_levels", "load_json"]


def head_levels(input_size: int, output_size: int = 256) -> int:
    """The upscaling head's levels from ``input_size`` to ``output_size`` (each level doubles the resolution):
    ``log2(output_size / input_size)``; ``ValueError`` unless the ratio is a power of two."""
    ratio = output_size // input_size if input_size > 0 else 0
    if ratio < 1 or output_size % input_size or ratio & (ratio - 1):
        raise ValueError(f"input size {input_size} must divide {output_size} by a power of two.")
    return int(math.log2(ratio))


def load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


@dataclass(frozen=True)
class BundleSpec:
    """One dataset x input-resolution pairing: ``profile`` is the dataset's ``configs/datasets/<dataset>.json``.
    With ``sizes`` (issue 16) the bundle's one network serves every size of ``sizes`` and ``input_size`` is its
    default operating point."""

    dataset: str
    profile: dict
    input_size: int
    output_size: int
    sizes: tuple[int, ...] = ()

    @property
    def switchable(self) -> bool:
        return bool(self.sizes)

    @property
    def name(self) -> str:
        return f"{self.profile['bundle_prefix']}_{'any' if self.switchable else self.input_size}"

    @property
    def head_levels(self) -> int:
        """The head's levels: from the input size, or for a switchable bundle from its smallest size (all levels)."""
        return head_levels(min(self.sizes) if self.switchable else self.input_size, self.output_size)

    def config_values(self) -> dict:
        """The top-level config keys that differ between bundles: the profile's ``config`` and the matrix's sizes."""
        return {
            **self.profile["config"],
            "input_size": self.input_size,
            "output_size": self.output_size,
            "head_levels": self.head_levels,
            **({"any_sizes": list(self.sizes)} if self.switchable else {}),
        }


def bundle_specs(configs_dir: str) -> Iterator[BundleSpec]:
    matrix = load_json(os.path.join(configs_dir, "matrix.json"))
    for dataset in matrix["datasets"]:
        profile = load_json(os.path.join(configs_dir, "datasets", f"{dataset}.json"))
        for size in matrix["resolutions"]:
            head_levels(int(size), int(matrix["output_size"]))  # refuses a size the head cannot reach
            yield BundleSpec(dataset, profile, int(size), int(matrix["output_size"]))
        any_size = matrix.get("any_size")
        if any_size:
            sizes = tuple(sorted(int(size) for size in any_size["sizes"]))
            default = int(any_size["default_size"])
            for size in sizes:
                head_levels(size, int(matrix["output_size"]))
            if default not in sizes:
                raise ValueError(f"configs/matrix.json: any_size default_size {default} is not one of its sizes {list(sizes)}.")
            yield BundleSpec(dataset, profile, default, int(matrix["output_size"]), sizes)
