"""
Peak memory of segmenting one large volume (issue 17, memory): ``python -m monai.bundle run inference.json``
against the standalone runner (ONNX Runtime) on the same 512 x 512 x D x 2 float32 ``.nii.gz``, as
``python -m jnet bench_memory`` measures it. Each command runs under a small fork-exec wrapper and its peak RSS is
the kernel's ``ru_maxrss`` of that one process (the bundle with ``num_workers 0``, so it is one process; a child
forked from this torch-holding process would inherit this process's RSS in the figure). Each program runs on two
depths (64 slices: more than one slab of the runner's and the inferer's batch of 32, and DEPTH): the figure of merit
is the slope, MB of peak RSS per MB of decompressed input; the constant is what the line gives at no input (the
interpreter, the libraries, one slab's buffers). Issue 17's bound: the slope under 2.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import nibabel as nib
import numpy as np
import torch

__all__ = ["VolumeMemory", "peak_rss_mb", "measured_run", "machine_description", "seeded_bundle_and_kit", "write_large_volume", "bench_volume_memory", "format_volume_memory_table", "write_volume_memory_report"]

BUNDLE = "prostate_mri_lowres_32"
SMALL_DEPTH = 64  # the smaller of the two depths: above one slab of 32 slices
_PEAK_LINE = re.compile(r"JNET_PEAK_RSS_KB (\d+)")
_WRAPPER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "sys.stderr.write('\\nJNET_PEAK_RSS_KB %d\\n' % usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


@dataclass
class VolumeMemory:
    program: str  # "bundle" or "runner"
    depth: int  # slices of the large volume
    input_mb: float  # its decompressed size
    peak_mb: float  # peak RSS on it
    small_input_mb: float  # the SMALL_DEPTH-slice volume's decompressed size
    small_peak_mb: float  # and peak RSS on it
    slope: float  # MB of peak RSS per MB of input, between the two
    constant_mb: float  # the line's peak at no input
    machine: str = ""  # where it was measured

    @property
    def within_bound(self) -> bool:
        """Issue 17's bound: peak under 2x the decompressed input plus a constant."""
        return self.slope < 2.0


def peak_rss_mb(command: list[str], cwd: str, log_path: str) -> float:
    """Run ``command`` in ``cwd`` (output to ``log_path``) under a lean ``python -S`` fork-exec wrapper; its peak
    RSS in MB. Exits with the log named when the command fails."""
    return measured_run(command, cwd, log_path)[0]


def measured_run(command: list[str], cwd: str, log_path: str) -> tuple[float, float]:
    """:func:`peak_rss_mb`, and the command's wall time in seconds (start-up included)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        returncode = subprocess.run([sys.executable, "-S", "-c", _WRAPPER] + list(command), cwd=cwd, stdout=log, stderr=subprocess.STDOUT).returncode
    wall_s = time.perf_counter() - start
    text = open(log_path, errors="replace").read()
    peaks = _PEAK_LINE.findall(text)
    if returncode != 0 or not peaks:
        sys.exit(f"ERROR: '{' '.join(command)}' failed (exit {returncode}); see {log_path}")
    return int(peaks[-1]) / 1024, wall_s


def seeded_bundle_and_kit(bundle: str, out_dir: str) -> tuple[str, str]:
    """``out_dir/models/model.pt`` with the seeded random weights of ``bundle``'s network (speed and memory do not
    depend on them) and its exported kit in ``out_dir/kit``: a bundle root and a runner for the benchmarks. Returns
    the repository bundle folder and the kit folder."""
    from jnet.bundles.parse import bundle_parser
    from jnet.deploy.kit import export_kit
    from jnet.tools.bundle_commands import repo_bundle

    os.makedirs(os.path.join(out_dir, "models"), exist_ok=True)
    bundle_dir = repo_bundle(bundle)
    torch.manual_seed(0)
    network = bundle_parser(bundle_dir, base="configs/inference.json").get_parsed_content("network_def")
    model_file = os.path.join(out_dir, "models", "model.pt")
    torch.save(network.state_dict(), model_file)
    kit = os.path.join(out_dir, "kit")
    export_kit(bundle_dir, kit, model_file)
    return bundle_dir, kit


def write_large_volume(path: str, depth: int, side: int = 512, channels: int = 2) -> float:
    """A ``side x side x depth x channels`` float32 ``.nii.gz`` (smooth in-plane pattern plus noise, 0.5 x 0.5 x 3
    mm); returns its decompressed size in MB."""
    rng = np.random.default_rng(0)
    grid = np.linspace(-1, 1, side, dtype=np.float32)
    pattern = np.exp(-4 * (grid[:, None] ** 2 + grid[None, :] ** 2))
    data = np.empty((side, side, depth, channels), dtype=np.float32)
    for z in range(depth):
        data[:, :, z, :] = (pattern * (100 + z))[..., None] + rng.normal(0, 5, (side, side, channels)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 3.0, 1.0])), path)
    return data.nbytes / 2**20


def bench_volume_memory(out_dir: str, depth: int = 400, bundle: str = BUNDLE, programs: tuple[str, ...] = ("bundle", "runner")) -> list[VolumeMemory]:
    """Peak RSS of the bundle's inference and of the standalone runner on a 512 x 512 x ``depth`` x 2 volume and
    on a SMALL_DEPTH-slice one (random weights: memory does not depend on them)."""
    from jnet.tools.bundle_commands import bundle_command

    bundle_dir, kit = seeded_bundle_and_kit(bundle, out_dir)
    peaks: dict[tuple[str, int], float] = {}
    sizes = {}
    for slices in (SMALL_DEPTH, depth):
        volume = os.path.join(out_dir, f"volume_{slices}.nii.gz")
        sizes[slices] = write_large_volume(volume, slices)
        bundle_run = bundle_command(["configs/inference.json"], {"bundle_root": out_dir, "input_files": f"['{volume}']", "output_dir": os.path.join(out_dir, f"bundle_{slices}"), "num_workers": 0})
        runner_run = [sys.executable, os.path.join(kit, "jnet_runner"), os.path.join(kit, "model.onnx"), volume, "--output_dir", os.path.join(out_dir, f"runner_{slices}")]
        if "bundle" in programs:
            peaks["bundle", slices] = peak_rss_mb(bundle_run, bundle_dir, os.path.join(out_dir, f"bundle_{slices}.log"))
        if "runner" in programs:
            peaks["runner", slices] = peak_rss_mb(runner_run, out_dir, os.path.join(out_dir, f"runner_{slices}.log"))
        os.remove(volume)
    results = []
    for program in programs:
        slope = (peaks[program, depth] - peaks[program, SMALL_DEPTH]) / (sizes[depth] - sizes[SMALL_DEPTH])
        constant = peaks[program, SMALL_DEPTH] - slope * sizes[SMALL_DEPTH]
        results.append(VolumeMemory(program, depth, round(sizes[depth], 1), round(peaks[program, depth], 1), round(sizes[SMALL_DEPTH], 1),
                                    round(peaks[program, SMALL_DEPTH], 1), round(slope, 2), round(constant, 1), machine_description()))
    return results


def machine_description() -> str:
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, Python {platform.python_version()}"


def format_volume_memory_table(results: list[VolumeMemory]) -> str:
    """The markdown table of :func:`bench_volume_memory`, and the machine it was measured on."""
    lines = ["| program | volume | decompressed input | peak RSS | peak at 64 slices | MB of peak per MB of input | constant | under 2x input + constant |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.program} | 512x512x{r.depth}x2 float32 | {r.input_mb:.0f} MB | {r.peak_mb:.0f} MB | {r.small_peak_mb:.0f} MB | {r.slope:.2f} | {r.constant_mb:.0f} MB | {'yes' if r.within_bound else 'no'} |")
    machines = sorted({r.machine for r in results if r.machine})
    return "\n".join(lines) + "\n" + (f"\nMachine: {'; '.join(machines)}.\n" if machines else "")


def write_volume_memory_report(results: list[VolumeMemory], out_dir: str) -> str:
    """``volume_memory.json`` and ``volume_memory.md`` in ``out_dir``; returns the table."""
    with open(os.path.join(out_dir, "volume_memory.json"), "w") as f:
        json.dump([asdict(r) for r in results], f, indent=4)
        f.write("\n")
    table = format_volume_memory_table(results)
    with open(os.path.join(out_dir, "volume_memory.md"), "w") as f:
        f.write(table)
    return table
