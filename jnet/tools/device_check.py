"""The GPU device check (issue 19): the bundles' CUDA paths run where a CUDA machine is available.

For two bundles, on synthetic data written here: a 1-epoch ``monai.bundle run configs/train.json --amp True`` on the
device, ``evaluate.json`` and ``inference.json`` on the device, the same inference on the CPU with the same weights
(the masks compared voxel by voxel, and their affines), and the bundle network's eager throughput on the device at
batch 1 and 32 in fp32 and in AMP (float16 autocast). One JSON and one Markdown table in ``out_dir``.

Made for a machine that has PyTorch (with CUDA) but no internet: ``make device-wheels`` (here) downloads the other
packages the bundles need as wheels into ``.device/wheels``; ``make device-check`` (there) installs them into
``.device/site`` and runs this module. With ``device="cpu"`` the same steps run on the CPU (the plumbing test of
``tests/test_device_check.py``); the figures of a GPU come only from a GPU.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from jnet.bundles.parse import bundle_parser
from jnet.tools.bundle_commands import repo_bundle, run_bundle_command
from jnet.tools.reports import write_report
from jnet.tools.synthetic import write_brats_task, write_prostate_task

__all__ = ["DEVICE_BUNDLES", "DEVICE_PACKAGES", "device_check", "download_wheels", "eager_throughput", "format_device_table"]

DEVICE_BUNDLES = ("prostate_mri_lowres_32", "brats_mri_lowres_16")
# what the bundles import beyond what a PyTorch machine image holds (torch, numpy, scipy, tensorboard, tqdm, ...)
DEVICE_PACKAGES = ("monai", "nibabel", "pytorch-ignite", "fire", "termcolor")
BATCHES = (1, 32)


def download_wheels(out_dir: str) -> list[str]:
    """The wheels of :data:`DEVICE_PACKAGES` at the versions installed here (pure-Python wheels, any Python 3),
    downloaded into ``out_dir``; returns their paths."""
    from importlib.metadata import version

    os.makedirs(out_dir, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in DEVICE_PACKAGES]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", out_dir, *pins]
    if subprocess.run(command).returncode != 0:
        sys.exit(f"ERROR: '{' '.join(command)}' failed: the package index must be reachable from this machine.")
    wheels = sorted(glob.glob(os.path.join(out_dir, "*.whl")))
    total = sum(os.path.getsize(w) for w in wheels) / 2**20
    print(f"{out_dir}: {len(wheels)} wheels, {total:.1f} MiB ({', '.join(pins)})")
    return wheels


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eager_throughput(network: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device, amp: bool, batch: int,
                     budget_s: float = 1.0) -> float:
    """Images/s of ``network`` in eval mode under ``torch.inference_mode`` on ``device`` at ``batch``, fp32 or
    float16 autocast (``amp``): the fastest of the timed calls after two warm-ups, synchronised per call."""
    network = network.to(device).eval()
    x = torch.randn(batch, *input_shape, device=device)
    fastest = float("inf")
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=amp):
        for _ in range(2):
            network(x)
        _synchronize(device)
        start = time.perf_counter()
        while fastest == float("inf") or time.perf_counter() - start < budget_s:
            tick = time.perf_counter()
            network(x)
            _synchronize(device)
            fastest = min(fastest, time.perf_counter() - tick)
    return batch / fastest


def _write_data(dataset: str, out_dir: str) -> str:
    if dataset == "prostate":
        write_prostate_task(out_dir, num_train=6, num_test=2, seed=1, slice_sizes=((160, 160), (192, 160)), num_slices=(8, 10))
    else:
        write_brats_task(out_dir, "decathlon", num_train=6, num_test=2, seed=1, size=(120, 120), num_slices=(8, 10))
    return out_dir


def _masks(folder: str) -> dict[str, str]:
    return {os.path.basename(p): p for p in glob.glob(os.path.join(folder, "**", "*.nii.gz"), recursive=True)}


def _compare_masks(device_dir: str, cpu_dir: str) -> dict:
    """Voxel agreement of each mask written on the device with the CPU's (and whether their affines agree)."""
    import nibabel as nib

    ours, theirs = _masks(device_dir), _masks(cpu_dir)
    if not ours or set(ours) != set(theirs):
        return {"masks": len(ours), "cpu_masks": len(theirs), "same_files": False}
    agreement, affines = [], True
    for name, path in sorted(ours.items()):
        a, b = nib.load(path), nib.load(theirs[name])
        agreement.append(float((np.asarray(a.dataobj) == np.asarray(b.dataobj)).mean()))
        affines &= bool(np.allclose(a.affine, b.affine, atol=1e-5))
    return {"masks": len(ours), "same_files": True, "min_voxel_agreement": min(agreement), "mean_voxel_agreement": float(np.mean(agreement)),
            "affines_equal": affines}


def _mean_dice(eval_dir: str) -> float | None:
    """The mean over volumes of MetricsSaver's per-volume ``mean`` column (``val_mean_dice_raw.csv``), NaN left out."""
    import csv

    path = os.path.join(eval_dir, "val_mean_dice_raw.csv")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        values = [float(row["mean"]) for row in csv.DictReader(f) if row.get("mean") not in (None, "", "nan")]
    return float(np.mean(values)) if values else None


def _check_bundle(name: str, work: str, device: torch.device, amp: bool, epochs: int, overrides: dict, budget_s: float) -> dict:
    bundle = repo_bundle(name)
    dataset = "prostate" if name.startswith("prostate") else "brats"
    data = _write_data(dataset, os.path.join(work, f"{dataset}_data"))
    root = os.path.join(work, name)
    logs = os.path.join(root, "logs")
    os.makedirs(logs, exist_ok=True)
    common = {"bundle_root": root, "dataset_dir": data, "num_workers": 0, **overrides}
    on_device = {**common, "device": str(device)}
    seconds = {
        "train": run_bundle_command(bundle, ["configs/train.json"], {**on_device, "epochs": epochs, "amp": amp, "num_folds": 3}, os.path.join(logs, "train.log")),
        "evaluate": run_bundle_command(bundle, ["configs/train.json", "configs/evaluate.json"],
                                       {**on_device, "amp": amp, "num_folds": 3, "output_dir": os.path.join(root, "eval")}, os.path.join(logs, "evaluate.log")),
        "inference": run_bundle_command(bundle, ["configs/inference.json"], {**on_device, "output_dir": os.path.join(root, "masks_device")},
                                        os.path.join(logs, "inference.log")),
        "inference_cpu": run_bundle_command(bundle, ["configs/inference.json"], {**common, "device": "cpu", "output_dir": os.path.join(root, "masks_cpu")},
                                            os.path.join(logs, "inference_cpu.log")),
    }
    parser = bundle_parser(bundle, base="configs/inference.json")
    parser.update({key: value for key, value in overrides.items() if key in parser})
    network = parser.get_parsed_content("network_def")
    shape = (int(parser["in_channels"]), int(parser["input_size"]), int(parser["input_size"]))
    throughput = {
        f"{precision}_b{batch}": eager_throughput(network, shape, device, precision == "amp", batch, budget_s)
        for precision in ("fp32", "amp") for batch in BATCHES
    }
    return {
        "seconds": seconds,
        "val_mean_dice": _mean_dice(os.path.join(root, "eval")),
        "masks_vs_cpu": _compare_masks(os.path.join(root, "masks_device"), os.path.join(root, "masks_cpu")),
        "eager_images_per_s": throughput,
        "input_shape": list(shape),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__}): not a GPU"


def format_device_table(report: dict) -> str:
    """The report as Markdown: one row per bundle."""
    lines = [
        f"Device check on {report['device_name']}; `{report['command']}`; {report['date']}.",
        "",
        "| bundle | train 1 epoch (s) | evaluate (s) | inference (s) | val mean Dice | masks = CPU's (min voxel agreement) | affines = CPU's "
        "| fp32 b1 | fp32 b32 | AMP b1 | AMP b32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in report["bundles"].items():
        seconds, masks, rate = result["seconds"], result["masks_vs_cpu"], result["eager_images_per_s"]
        dice = "-" if result["val_mean_dice"] is None else f"{result['val_mean_dice']:.3f}"
        agreement = f"{masks['min_voxel_agreement']:.5f} ({masks['masks']} masks)" if masks.get("same_files") else f"files differ: {masks}"
        lines.append(
            f"| {name} | {seconds['train']:.1f} | {seconds['evaluate']:.1f} | {seconds['inference']:.1f} | {dice} | {agreement} "
            f"| {masks.get('affines_equal', '-')} | " + " | ".join(f"{rate[k]:.0f}" for k in ("fp32_b1", "fp32_b32", "amp_b1", "amp_b32")) + " |"
        )
    lines += ["", "Images/s: the bundle network's eager forward (inference mode), fastest call, network only, on the device."]
    return "\n".join(lines) + "\n"


def device_check(out_dir: str = "device_check_output", device: str = "cuda", bundles: tuple[str, ...] = DEVICE_BUNDLES, epochs: int = 1,
                 overrides: dict | None = None, budget_s: float = 1.0) -> dict:
    """Run the check on ``device`` ("cuda": refused with one line where no CUDA device is visible) and write
    ``out_dir/device_check.json`` and ``device_check.md``; returns the report."""
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        sys.exit("ERROR: no CUDA device visible to torch: the device check runs on a GPU machine (make device-check there).")
    missing = [name for name in ("monai", "nibabel", "ignite", "fire", "scipy", "tensorboard") if importlib.util.find_spec(name) is None]
    if missing:  # the wheels of make device-wheels, or the machine image's own packages
        sys.exit(f"ERROR: {', '.join(missing)} not importable: make device-wheels (here) carries monai, nibabel, pytorch-ignite "
                 "and fire; scipy and tensorboard must be on the machine.")
    amp = chosen.type == "cuda"  # MONAI's AMP (GradScaler, float16 autocast) is the CUDA path
    os.makedirs(out_dir, exist_ok=True)
    work = os.path.join(out_dir, "work")
    started = time.perf_counter()
    report = {
        "device_name": device_name(chosen),
        "device": str(chosen),
        "amp": amp,
        "date": time.strftime("%Y-%m-%d"),
        "command": "make device-check" if chosen.type == "cuda" else f"python -m jnet device_check --device {device}",
        "bundles": {},
    }
    for name in bundles:
        report["bundles"][name] = _check_bundle(name, work, chosen, amp, epochs, overrides or {}, budget_s)
        print(f"{name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    report["wall_s"] = time.perf_counter() - started
    write_report(out_dir, "device_check", report, format_device_table(report))
    return report
