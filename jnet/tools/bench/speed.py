"""Latency (batch 1) and throughput (batch 32) on CPU, in PyTorch eager and in ONNX Runtime."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["time_calls", "eager_speed", "onnxruntime_speed", "fastest_of_rounds", "matmul_limit_gmacs"]


def time_calls(call: Callable[[], object], budget_s: float = 1.0, min_runs: int = 3, max_runs: int = 200) -> float:
    """Seconds of the fastest call, after one warm-up call, running for about ``budget_s`` seconds (at least
    ``min_runs`` calls). The fastest, as ``timeit`` advises: on a shared 2-core machine other work - including the
    other runtime's worker threads still spinning after their last job - only ever slows a call down, and the
    median of a short run still moved by +-20 % between runs here, the minimum by a few %."""
    call()
    durations: list[float] = []
    start = time.perf_counter()
    while len(durations) < max_runs and (len(durations) < min_runs or time.perf_counter() - start < budget_s):
        tick = time.perf_counter()
        call()
        durations.append(time.perf_counter() - tick)
    return min(durations)


def eager_speed(
    model: nn.Module, input_shape: tuple[int, ...], batch: int = 32, budget_s: float = 1.0, channels_last: bool = False, inferer_batch: int | None = None
) -> dict[str, float]:
    """``latency_ms`` at batch 1 and ``images_per_s`` at ``batch`` in PyTorch eager (``torch.inference_mode``, eval
    mode); ``channels_last``: the inputs in ``torch.channels_last`` memory format, as the bundles' inferer hands them
    to the network; ``inferer_batch``: also ``images_per_s_inferer`` at that batch (the bundle's slices per call)."""
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    single = torch.randn(1, *input_shape).contiguous(memory_format=memory_format)
    many = torch.randn(batch, *input_shape).contiguous(memory_format=memory_format)
    with torch.inference_mode():
        latency = time_calls(lambda: model(single), budget_s)
        per_batch = time_calls(lambda: model(many), budget_s)
        figures = {"latency_ms": 1000 * latency, "images_per_s_b1": 1 / latency, "images_per_s": batch / per_batch}
        if inferer_batch:
            chunk = torch.randn(inferer_batch, *input_shape).contiguous(memory_format=memory_format)
            figures["images_per_s_inferer"] = inferer_batch / time_calls(lambda: model(chunk), budget_s)
    return figures


def onnxruntime_speed(onnx_path: str, input_shape: tuple[int, ...], batch: int = 32, budget_s: float = 1.0) -> dict[str, float]:
    """The same measured with ONNX Runtime's CPU execution provider (all cores, default graph optimisations)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    single = np.random.randn(1, *input_shape).astype(np.float32)
    many = np.random.randn(batch, *input_shape).astype(np.float32)
    latency = time_calls(lambda: session.run(None, {name: single}), budget_s)
    per_batch = time_calls(lambda: session.run(None, {name: many}), budget_s)
    return {"latency_ms": 1000 * latency, "images_per_s_b1": 1 / latency, "images_per_s": batch / per_batch}


def fastest_of_rounds(measures: dict[str, Callable[[], dict[str, float]]], rounds: int = 3) -> dict[str, dict[str, float]]:
    """Run each named measurement ``rounds`` times, alternating between them, and keep each figure's best round
    (highest images/s, lowest latency). Networks that are compared with each other (the head against the same
    network with a bilinear output) then see the same machine conditions: load that comes and goes affects both."""
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, measure in measures.items():
            figures = measure()
            if name not in best:
                best[name] = figures
                continue
            for key, value in figures.items():
                keep = min if key.startswith("latency") else max
                best[name][key] = keep(best[name][key], value)
    return best


def matmul_limit_gmacs(size: int = 2048, budget_s: float = 2.0) -> float:
    """This CPU's fp32 matrix-multiply limit, G multiply-accumulates per second: the fastest ``size`` x ``size`` x
    ``size`` MatMul through ONNX Runtime (all cores) - the yardstick every bench figure is shown against, measured in the
    same process as the figures (a shared or throttled host gives a lower limit, and then lower figures with it; on
    the 2-core AMD VM of docs/results.md it measured 65 to 94 G MAC/s from one call to the next, PyTorch's own GEMM
    76)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a, b = (np.random.randn(size, size).astype(np.float32) for _ in range(2))
    seconds = time_calls(lambda: session.run(None, {"a": a, "b": b}), budget_s)
    return size**3 / seconds / 1e9
