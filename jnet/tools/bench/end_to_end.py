"""
End to end, as a user runs it (issue 19): the same synthetic test volumes segmented by the bundle's
``python -m monai.bundle run --config_file configs/inference.json`` (PyTorch eager, its own defaults) and by the
exported kit's standalone runner (ONNX Runtime), each one process from start-up to the last mask: wall time,
volumes/s and peak RSS (the kernel's ``ru_maxrss`` of the process, :func:`~jnet.tools.bench.volume_memory.measured_run`),
and whether both wrote the same masks; and what each program's imports alone take in a fresh interpreter (the part of
its wall time no volume changes).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

import nibabel as nib
import numpy as np

from .speed import time_calls
from .volume_memory import machine_description, measured_run, seeded_bundle_and_kit

__all__ = ["EndToEnd", "bench_end_to_end", "format_end_to_end_table", "write_end_to_end_report"]

BUNDLE = "prostate_mri_lowres_32"
# what each program imports before its first volume: `monai.bundle run` imports monai.bundle (and with it all of
# MONAI: monai/__init__ loads every submodule) and the inference config's imports; the runner its own modules
# (numpy, nibabel) and ONNX Runtime
BUNDLE_IMPORTS = "import monai.bundle, torch, jnet"
RUNNER_IMPORTS = "import onnxruntime, jnet.deploy.runner.cli"


@dataclass
class EndToEnd:
    bundle: str
    volumes: int
    slices: int
    bundle_wall_s: float
    runner_wall_s: float
    bundle_peak_mb: float
    runner_peak_mb: float
    masks_equal: float  # the share of voxels on which the two programs' masks agree, over all volumes
    machine: str = ""
    bundle_imports_s: float | None = None  # BUNDLE_IMPORTS in a fresh interpreter, fastest of 3
    runner_imports_s: float | None = None  # RUNNER_IMPORTS likewise, from the kit's own copy of jnet (its folder first on sys.path)

    @property
    def wall_ratio(self) -> float:
        """The bundle's wall time over the runner's (issue 19's target: at most 1.5)."""
        return self.bundle_wall_s / self.runner_wall_s

    @property
    def after_imports_ratio(self) -> float | None:
        """The bundle's wall time over the runner's, each without its imports (None: not measured, or the runner's
        imports timed at least its whole run - a tiny run on a loaded machine)."""
        if self.bundle_imports_s is None or self.runner_imports_s is None or self.runner_wall_s <= self.runner_imports_s:
            return None
        return (self.bundle_wall_s - self.bundle_imports_s) / (self.runner_wall_s - self.runner_imports_s)


def import_seconds(statement: str, cwd: str, repeats: int = 3) -> float:
    """Wall seconds of ``python -c statement`` in a fresh interpreter started in ``cwd`` (first on its ``sys.path``,
    as a program's own folder is), the fastest of ``repeats`` after a warm-up (:func:`time_calls`): the start-up a
    program pays before it reads anything."""
    command = [sys.executable, "-c", statement]
    return time_calls(lambda: subprocess.run(command, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                      budget_s=0.0, min_runs=repeats, max_runs=repeats)


def bench_end_to_end(out_dir: str, num_volumes: int = 24, bundle: str = BUNDLE, num_slices: tuple[int, int] = (15, 20)) -> EndToEnd:
    """Segment ``num_volumes`` synthetic prostate test volumes (the synthetic generator's defaults, seed 0) with the
    bundle and with its standalone runner (seeded random weights: speed does not depend on them; the masks'
    agreement is then a check that both ran the same steps, not a quality figure)."""
    from jnet.tools.bundle_commands import bundle_command
    from jnet.tools.synthetic.prostate import write_prostate_task

    data = os.path.join(out_dir, "Task05_synthetic")
    write_prostate_task(data, num_train=0, num_test=num_volumes, seed=0, num_slices=num_slices)
    volumes = sorted(glob.glob(os.path.join(data, "imagesTs", "*.nii.gz")))
    slices = sum(int(nib.load(v).shape[2]) for v in volumes)
    bundle_dir, kit = seeded_bundle_and_kit(bundle, out_dir)
    bundle_out, runner_out = os.path.join(out_dir, "bundle_masks"), os.path.join(out_dir, "runner_masks")
    bundle_run = bundle_command(["configs/inference.json"], {"bundle_root": out_dir, "dataset_dir": data, "output_dir": bundle_out})
    runner_run = [sys.executable, os.path.join(kit, "jnet_runner"), os.path.join(kit, "model.onnx"), os.path.join(data, "imagesTs"),
                  "--output_dir", runner_out]
    bundle_peak, bundle_wall = measured_run(bundle_run, bundle_dir, os.path.join(out_dir, "bundle.log"))
    runner_peak, runner_wall = measured_run(runner_run, out_dir, os.path.join(out_dir, "runner.log"))
    agree = total = 0
    for volume in volumes:
        name = os.path.basename(volume).replace(".nii.gz", "_seg.nii.gz")
        a = np.asarray(nib.load(os.path.join(bundle_out, name)).dataobj)
        b = np.asarray(nib.load(os.path.join(runner_out, name)).dataobj)
        agree, total = agree + int((a == b).sum()), total + a.size
    bundle_imports = import_seconds(BUNDLE_IMPORTS, bundle_dir)  # where monai.bundle run starts
    runner_imports = import_seconds(RUNNER_IMPORTS, os.path.join(kit, "jnet_runner"))  # the kit's own jnet first
    return EndToEnd(bundle, len(volumes), slices, round(bundle_wall, 2), round(runner_wall, 2), round(bundle_peak, 1), round(runner_peak, 1),
                    round(agree / total, 6), machine_description(), round(bundle_imports, 2), round(runner_imports, 2))


def format_end_to_end_table(result: EndToEnd) -> str:
    """The markdown table of :func:`bench_end_to_end`."""
    r = result

    def imports(seconds: float | None, wall_s: float) -> str:
        return "- | -" if seconds is None else f"{seconds:.1f} s | {wall_s - seconds:.1f} s"

    lines = [
        "| program | volumes (slices) | wall time | volumes/s | peak RSS | its imports alone | wall time less imports |",
        "|---|---|---|---|---|---|---|",
        f"| `monai.bundle run inference.json` ({r.bundle}) | {r.volumes} ({r.slices}) | {r.bundle_wall_s:.1f} s | {r.volumes / r.bundle_wall_s:.2f} | {r.bundle_peak_mb:.0f} MB | {imports(r.bundle_imports_s, r.bundle_wall_s)} |",
        f"| standalone runner (ONNX Runtime) | {r.volumes} ({r.slices}) | {r.runner_wall_s:.1f} s | {r.volumes / r.runner_wall_s:.2f} | {r.runner_peak_mb:.0f} MB | {imports(r.runner_imports_s, r.runner_wall_s)} |",
    ]
    after = r.after_imports_ratio
    after_text = "" if after is None else (
        f"; without each program's imports ({BUNDLE_IMPORTS!r} and {RUNNER_IMPORTS!r} in a fresh interpreter, fastest of 3) "
        f"{after:.2f}x")
    return "\n".join(lines) + (f"\n\nBundle / runner wall time: {r.wall_ratio:.2f}x (start-up included){after_text}; the masks agree on "
                               f"{100 * r.masks_equal:.2f} % of the voxels. Machine: {r.machine}.\n")


def write_end_to_end_report(result: EndToEnd, out_dir: str) -> str:
    """``end_to_end.json`` and ``end_to_end.md`` in ``out_dir``; returns the table."""
    with open(os.path.join(out_dir, "end_to_end.json"), "w") as f:
        json.dump(asdict(result), f, indent=4)
        f.write("\n")
    table = format_end_to_end_table(result)
    with open(os.path.join(out_dir, "end_to_end.md"), "w") as f:
        f.write(table)
    return table
