"""Training speed of every bundle: slices/s of its own training step on CPU, in each memory format.

The step is the bundle's ``configs/train.json`` as ``monai.bundle run`` builds it - ``network`` (with its
``channels_last`` setting), ``loss``, ``optimizer`` - on one batch of ``batch_size x slices_per_volume`` slices at the
bundle's input size with targets at the output size: forward, the multi-stage loss, backward, the optimizer's step.
Data loading and augmentation are not part of it (``CacheDataset`` holds the volumes; the sampled slices are small).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

import torch

import monai
from jnet.bundles.matrix import bundle_specs
from jnet.bundles.parse import bundle_parser
from jnet.tools.bench.speed import time_calls

__all__ = ["training_step", "bench_training", "format_training_table", "MEMORY_FORMATS"]

MEMORY_FORMATS = {"contiguous": False, "channels_last": True}  # the train config's ``channels_last`` per column


def training_step(bundle_dir: str, channels_last: bool, seed: int = 0) -> tuple[Callable[[], float], int, torch.nn.Module]:
    """One training step of the bundle's own network, loss and optimizer on CPU (seeded weights and batch), the
    slices per step and the network it trains. The step returns the loss value."""
    parser = bundle_parser(bundle_dir)
    parser["device"] = "$torch.device('cpu')"
    parser["channels_last"] = channels_last
    torch.manual_seed(seed)
    network, loss, optimizer = (parser.get_parsed_content(key) for key in ("network", "loss", "optimizer"))
    network.train()
    batch = int(parser["batch_size"]) * int(parser["slices_per_volume"])
    size, output, channels, classes = (int(parser[key]) for key in ("input_size", "output_size", "in_channels", "num_classes"))
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, channels, size, size, generator=generator)
    if getattr(loss, "num_classes", None) is None:  # multi-channel targets (BraTS regions)
        labels = (torch.rand(batch, classes, output, output, generator=generator) > 0.7).float()
    else:
        labels = torch.randint(0, classes, (batch, 1, output, output), generator=generator).float()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        value = loss(network(images), labels)
        value.backward()
        optimizer.step()
        return float(value.detach())

    return step, batch, network


def bench_training(bundles_dir: str = "bundles", configs_dir: str = "configs", budget_s: float = 1.0) -> dict:
    """Slices/s of every per-size bundle's training step in each memory format (fastest step of about ``budget_s``
    seconds each, after one warm-up step)."""
    torch.set_num_threads(os.cpu_count() or 1)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), MONAI {monai.__version__}",
        "step": "the bundle's train.json network + loss + optimizer: forward, multi-stage loss, backward, optimizer step "
        "(jnet/tools/bench/training.py); fastest step",
        "budget_s": budget_s,
        "bundles": {},
    }
    for spec in bundle_specs(configs_dir):
        if spec.switchable:  # its steps cycle through the sizes: each size's step is the per-size bundle's
            continue
        bundle = os.path.join(bundles_dir, spec.name)
        entry = {}
        for name, channels_last in MEMORY_FORMATS.items():
            step, batch, _ = training_step(bundle, channels_last)
            entry[name] = batch / time_calls(step, budget_s)
        entry["batch"] = batch
        entry["input_size"] = spec.input_size
        report["bundles"][spec.name] = entry
        print(f"{spec.name}: training {entry['contiguous']:.0f} / {entry['channels_last']:.0f} slices/s")
    return report


def format_training_table(report: dict, before: dict | None = None) -> str:
    """The Markdown table of :func:`bench_training`'s report; with ``before`` (the same measurement at an earlier
    commit, its ``commit`` named) also that commit's figure (the faster of its two columns: there the train config
    had no ``channels_last``, so both ran the same contiguous step) and the shipped step's speed-up over it."""
    lines = [f"Machine: {report['machine']}. Step: {report['step']}.", ""]
    header = "| bundle | slices per step | slices/s, contiguous | slices/s, channels_last | channels_last / contiguous |"
    if before:
        header += f" slices/s at {before['commit']} | shipped (channels_last) / {before['commit']} |"
    lines += [header, "|---|" + "---|" * (header.count("|") - 2)]
    for name, entry in report["bundles"].items():
        row = (f"| {name} | {entry['batch']} | {entry['contiguous']:.0f} | {entry['channels_last']:.0f} | "
               f"{entry['channels_last'] / entry['contiguous']:.2f}x |")
        if before:
            earlier = before["bundles"].get(name)
            if earlier:
                old = max(earlier[key] for key in MEMORY_FORMATS)
                row += f" {old:.0f} | {entry['channels_last'] / old:.2f}x |"
            else:
                row += " - | - |"
        lines.append(row)
    return "\n".join(lines) + "\n"
