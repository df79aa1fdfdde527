"""Training speed of every bundle: slices/s of its own training step on CPU, in each memory format.

The step is the bundle's ``configs/train.json`` as ``monai.bundle run`` builds it - ``network`` (with its
``channels_last`` setting), ``loss``, ``optimizer`` - on one batch of ``batch_size x slices_per_volume`` slices at the
bundle's input size with targets at the output size: forward, the multi-stage loss, backward, the optimizer's step.
Data loading and augmentation are not part of it (``CacheDataset`` holds the volumes; the sampled slices are small).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable

import torch

import monai
from jnet.bundles.matrix import bundle_specs
from jnet.bundles.parse import bundle_parser
from jnet.tools.bench.speed import fastest_of_rounds, time_calls

__all__ = ["training_step", "bench_training", "format_training_table", "MEMORY_FORMATS"]

MEMORY_FORMATS = {"contiguous": False, "channels_last": True}  # the train config's ``channels_last`` per column
ROUNDS = 3  # rounds alternating the memory formats (and commits), as the inference bench alternates its networks


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


def _per_size_steps(bundles_dir: str, configs_dir: str) -> dict[str, tuple[int, dict[str, tuple[Callable[[], float], int]]]]:
    """Every per-size bundle's input size and its training step in each memory format."""
    steps = {}
    for spec in bundle_specs(configs_dir):
        if spec.switchable:  # its steps cycle through the sizes: each size's step is the per-size bundle's
            continue
        bundle = os.path.join(bundles_dir, spec.name)
        steps[spec.name] = (spec.input_size, {name: training_step(bundle, channels_last)[:2] for name, channels_last in MEMORY_FORMATS.items()})
    return steps


def _measure_round(steps: dict, budget_s: float) -> dict[str, dict[str, float]]:
    """One round: each bundle's slices/s in each memory format, the formats one after the other."""
    return {name: {fmt: batch / time_calls(step, budget_s) for fmt, (step, batch) in formats.items()}
            for name, (_, formats) in steps.items()}


def _flat(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{bundle: {format: slices/s}}`` as ``{"bundle/format": slices/s}`` for :func:`fastest_of_rounds`."""
    return {f"{name}/{fmt}": value for name, entry in figures.items() for fmt, value in entry.items()}


def _nested(figures: dict[str, float]) -> dict[str, dict[str, float]]:
    nested: dict[str, dict[str, float]] = {}
    for key, value in figures.items():
        name, fmt = key.rsplit("/", 1)
        nested.setdefault(name, {})[fmt] = value
    return nested


def _before_round(before_repo: str, budget_s: float) -> dict[str, dict[str, float]]:
    """One round measured at an earlier checkout: this file's steps in a subprocess whose ``jnet`` (and bundles,
    configs) are that checkout's, so the earlier network, loss and optimizer run."""
    script = (f"import runpy, sys; sys.argv = ['training', {os.path.join(before_repo, 'bundles')!r}, "
              f"{os.path.join(before_repo, 'configs')!r}, {budget_s!r}]; runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": os.path.abspath(before_repo)}
    done = subprocess.run([sys.executable, "-c", script], cwd=before_repo, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"training bench at {before_repo}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _commit(repo: str) -> str:
    done = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or os.path.basename(os.path.abspath(repo))


def bench_training(bundles_dir: str = "bundles", configs_dir: str = "configs", budget_s: float = 1.0, before_repo: str | None = None, rounds: int = ROUNDS) -> dict:
    """Slices/s of every per-size bundle's training step in each memory format: the fastest step of ``rounds`` rounds
    (about ``budget_s`` seconds per figure in all, the formats alternating in each round), so both see the same
    machine conditions. ``before_repo``: a checkout of an earlier commit (``git worktree add /tmp/before <commit>``),
    whose steps are measured in the same rounds, between this code's (``report['before']``): a before/after ratio
    that machine load, which comes and goes, cannot make."""
    torch.set_num_threads(os.cpu_count() or 1)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), MONAI {monai.__version__}",
        "step": "the bundle's train.json network + loss + optimizer: forward, multi-stage loss, backward, optimizer step "
        f"(jnet/tools/bench/training.py); fastest step of {rounds} rounds alternating the memory formats"
        + (" and the two commits" if before_repo else ""),
        "budget_s": budget_s,
        "bundles": {},
    }
    steps = _per_size_steps(bundles_dir, configs_dir)
    measures = {"now": lambda: _flat(_measure_round(steps, budget_s / rounds))}
    if before_repo:
        measures["before"] = lambda: _flat(_before_round(before_repo, budget_s / rounds))
    fastest = {name: _nested(figures) for name, figures in fastest_of_rounds(measures, rounds).items()}
    best, before = fastest["now"], fastest.get("before", {})
    for name, (input_size, formats) in steps.items():
        entry = {**best[name], "batch": formats["channels_last"][1], "input_size": input_size}
        report["bundles"][name] = entry
        print(f"{name}: training {entry['contiguous']:.0f} / {entry['channels_last']:.0f} slices/s")
    if before_repo:
        report["before"] = {"commit": _commit(before_repo), "bundles": before,
                            "how": f"`python -m jnet bench_training --before_repo <a git worktree of it>`: measured in "
                                   f"the same {rounds} rounds, jnet/tools/bench/training.py's step in a subprocess running that checkout's "
                                   "code and bundles"}
    return report


def format_training_table(report: dict) -> str:
    """The Markdown table of :func:`bench_training`'s report; with its ``before`` (the same rounds at an earlier
    commit) also that commit's figure (the faster of its two columns: a train config without ``channels_last`` runs
    the same contiguous step in both) and the shipped step's speed-up over it."""
    before = report.get("before")
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


if __name__ == "__main__":  # one round for :func:`_before_round`: BUNDLES_DIR CONFIGS_DIR BUDGET_S, JSON on the last line
    torch.set_num_threads(os.cpu_count() or 1)
    print(json.dumps(_measure_round(_per_size_steps(sys.argv[1], sys.argv[2]), float(sys.argv[3]))))
