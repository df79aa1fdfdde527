"""The ``bench`` verb: parameters, MACs, CPU speed (eager and ONNX Runtime) and peak memory of every bundle (its
Markdown: :func:`jnet.tools.bench.table.render_bench_table`)."""

from __future__ import annotations

import json
import os
import platform
import tempfile

import torch

import monai
from jnet.tools.bench.jetson import assumptions, estimate, graph_cost
from jnet.tools.bench.macs import count_macs
from jnet.tools.bench.memory import peak_forward_memory
from jnet.tools.bench.speed import eager_speed, fastest_of_rounds, matmul_limit_gmacs, onnxruntime_speed
from jnet.bundles.matrix import bundle_specs
from jnet.bundles.parse import bundle_network, count_parameters
from jnet.inferers import slices_per_call
from jnet.deploy.export.onnx import export_onnx

__all__ = ["bench_bundles", "bench_networks", "under_nano_target", "SHARE_TARGET", "NANO_TARGET", "SHARE_KEYS"]

BATCH = 32
SHARE_TARGET = 0.75  # the head keeps at least this share of the bilinear-output network's throughput
NANO_TARGET = 20.0  # images/s on a Jetson Nano (the paper's claim)
SHARE_KEYS = ("eager_images_per_s_b1", "eager_images_per_s", "onnxruntime_images_per_s_b1", "onnxruntime_images_per_s")


ROUNDS = 3


def bench_networks(
    networks: dict[str, torch.nn.Module], input_shape: tuple[int, int, int], budget_s: float = 0.5, inferer_batch: int | None = None
) -> dict[str, dict]:
    """Every inference figure of each network for a ``(C, r, r)`` input. The speeds are the best of ``ROUNDS``
    rounds that alternate between the networks (``budget_s`` per figure and network in all), eager rounds first,
    then ONNX Runtime rounds. Eager runs as the bundles' inferer does (channels_last inputs, inference mode), also at
    ``inferer_batch`` slices per call where given."""
    results = {}
    for name, network in networks.items():
        network.eval()
        macs = count_macs(network, (1, *input_shape))
        peak = peak_forward_memory(network, torch.randn(BATCH, *input_shape))
        results[name] = {
            "parameters": count_parameters(network),
            "macs": macs,
            "peak_memory_mb_b32": None if peak is None else peak / 2**20,
        }
    share = budget_s / ROUNDS
    eager = fastest_of_rounds({n: lambda net=net: eager_speed(net, input_shape, BATCH, share, channels_last=True, inferer_batch=inferer_batch) for n, net in networks.items()}, ROUNDS)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {n: export_onnx(net, (1, *input_shape), os.path.join(tmp, f"{i}.onnx")) for i, (n, net) in enumerate(networks.items())}
        for name, path in paths.items():  # the latency model reads the exported graph (jnet/tools/bench/jetson.py)
            results[name]["jetson"] = estimate(graph_cost(path))
        runtime = fastest_of_rounds({n: lambda p=p: onnxruntime_speed(p, input_shape, BATCH, share) for n, p in paths.items()}, ROUNDS)
    for name in networks:
        results[name]["eager"], results[name]["onnxruntime"] = eager[name], runtime[name]
    return results


def under_nano_target(images_per_s: float) -> str:
    """``"under 20"`` for a Jetson Nano figure (the pessimistic batch-1 estimate) below the paper's images/s, else ``""``."""
    return f"under {NANO_TARGET:.0f}" if images_per_s < NANO_TARGET else ""


def _figure(result: dict, key: str) -> float:
    """``result["eager"]["images_per_s_b1"]`` for the key ``"eager_images_per_s_b1"`` (one of ``SHARE_KEYS``)."""
    runtime, _, figure = key.partition("_images")
    return result[runtime]["images" + figure]


def bench_bundles(configs_dir: str = "configs", bundles_dir: str = "bundles", budget_s: float = 0.5) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    limit = matmul_limit_gmacs()
    report = {
        "matmul_limit_gmacs": limit,
        "limit": "fp32 MatMul 2048x2048x2048 through ONNX Runtime on all cores (jnet/tools/bench/speed.py): this CPU's "
        "G multiply-accumulates per second; a network's share = images/s x its MACs / that",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), MONAI {monai.__version__}",
        "batch": BATCH,
        "timing": f"fastest call of {ROUNDS} rounds alternating head and bilinear networks, {budget_s} s per figure",
        "eager": "PyTorch eager as the bundles' SliceBatchInferer runs it: channels_last inputs, torch.inference_mode",
        "jetson_model": "latency model of jnet/tools/bench/jetson.py on the exported ONNX graph (fp16, TensorRT-style "
        "fusion): max(compute, memory) + kernels x launch floor, optimistic / pessimistic assumptions (docs/jetson.md)",
        "jetson_assumptions": assumptions(),
        "bundles": {},
    }
    for spec in bundle_specs(configs_dir):
        if spec.switchable:  # no bilinear ablation to compare with: the sweep's any rows time it at every size
            continue
        bundle = os.path.join(bundles_dir, spec.name)
        shape = (spec.profile["config"]["in_channels"], spec.input_size, spec.input_size)
        inferer_batch = slices_per_call(spec.input_size)
        measured = bench_networks({"head": bundle_network(bundle), "bilinear": bundle_network(bundle, ["configs/train_bilinear.json"])}, shape, budget_s, inferer_batch)
        head, plain = measured["head"], measured["bilinear"]
        head["added_parameters"] = head["parameters"] - plain["parameters"]
        head["share_of_bilinear_throughput"] = {key: _figure(head, key) / _figure(plain, key) for key in SHARE_KEYS}
        head["inferer_batch"] = inferer_batch
        for result in (head, plain):
            result["share_of_matmul_limit"] = {key: _figure(result, key) * result["macs"] / (limit * 1e9) for key in SHARE_KEYS}
        report["bundles"][spec.name] = {"head": head, "bilinear": plain}
        print(f"{spec.name}: done")
    return report
