"""Latency (batch 1) and throughput (batch 32) on CPU, in PyTorch eager and in ONNX Runtime."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["time_calls", "eager_speed", "onnxruntime_speed"]


def time_calls(call: Callable[[], object], budget_s: float = 1.0, min_runs: int = 3, max_runs: int = 200) -> float:
    """Median seconds per call, after one warm-up call, running for about ``budget_s`` seconds."""
    call()
    durations: list[float] = []
    start = time.perf_counter()
    while len(durations) < max_runs and (len(durations) < min_runs or time.perf_counter() - start < budget_s):
        tick = time.perf_counter()
        call()
        durations.append(time.perf_counter() - tick)
    return statistics.median(durations)


def eager_speed(model: nn.Module, input_shape: tuple[int, ...], batch: int = 32, budget_s: float = 1.0) -> dict[str, float]:
    """``latency_ms`` at batch 1 and ``images_per_s`` at ``batch`` in PyTorch eager (no grad, eval mode)."""
    model.eval()
    single = torch.randn(1, *input_shape)
    many = torch.randn(batch, *input_shape)
    with torch.no_grad():
        latency = time_calls(lambda: model(single), budget_s)
        per_batch = time_calls(lambda: model(many), budget_s)
    return {"latency_ms": 1000 * latency, "images_per_s_b1": 1 / latency, "images_per_s": batch / per_batch}


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
