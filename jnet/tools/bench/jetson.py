"""
A latency model for Jetson devices: images/s RANGES (optimistic / pessimistic) from an exported ONNX graph, never one
number and never a measurement.

Time per batch of ``B`` images::

    t(B) = max(compute, memory) + kernels x floor
    compute = B x 2 x MACs / (fp16 peak FLOP/s x compute share)
    memory  = (B x activation bytes + weight bytes) / (bandwidth x bandwidth share)

``kernels`` is the number of GPU kernels one call launches, counted from the graph after TensorRT-style fusion by
:func:`graph_cost` (the rule is in its docstring); ``floor`` is the fixed cost of one kernel launch, whatever its
size. Batch-1 latency and batch-32 throughput both come from ``t(B)``. Every assumption is in :data:`DEVICES` and
:data:`SCENARIOS` with its source; docs/jetson.md shows them as one table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Device", "Scenario", "GraphCost", "DEVICES", "SCENARIOS", "graph_cost", "batch_seconds", "estimate", "BATCHES", "assumptions"]

BATCHES = (1, 32)
BYTES_PER_VALUE = 2  # fp16 engines


@dataclass(frozen=True)
class Device:
    """A Jetson GPU: fp16 peak of its CUDA cores (2 FLOP per MAC) and memory bandwidth, with their sources."""

    name: str
    fp16_peak_flops: float
    bandwidth_bytes_per_s: float
    peak_source: str
    bandwidth_source: str


@dataclass(frozen=True)
class Scenario:
    """One end of the range: the share of the fp16 peak the convolutions reach, the share of the bandwidth the
    memory traffic reaches, and the fixed cost of one kernel launch (seconds)."""

    compute_share: float
    bandwidth_share: float
    kernel_floor_s: float


DEVICES = {
    "jetson_nano": Device(
        "Jetson Nano", 472e9, 25.6e9,
        "datasheet: 128 Maxwell CUDA cores x 921.6 MHz x 2 (FMA) x 2 (fp16x2) = 472 GFLOP/s",
        "datasheet: 4 GB 64-bit LPDDR4 at 25.6 GB/s",
    ),
    "jetson_orin_nano": Device(
        "Jetson Orin Nano", 2.56e12, 68e9,
        "datasheet: 1024 Ampere CUDA cores x 625 MHz x 2 x 2 = 2.56 TFLOP/s (tensor cores not assumed)",
        "datasheet: 8 GB 128-bit LPDDR5 at 68 GB/s",
    ),
}
# (device, end of the range) -> assumptions; the sources are in SCENARIO_SOURCES
SCENARIOS = {
    ("jetson_nano", "optimistic"): Scenario(0.70, 0.80, 10e-6),
    ("jetson_nano", "pessimistic"): Scenario(0.10, 0.50, 50e-6),
    ("jetson_orin_nano", "optimistic"): Scenario(0.70, 0.80, 5e-6),
    ("jetson_orin_nano", "pessimistic"): Scenario(0.10, 0.50, 25e-6),
}
SCENARIO_SOURCES = {
    "compute_share": (
        "optimistic 70 %: jetson-inference's FCN-ResNet18 (about 3.7 G MACs at 320x320, TensorRT fp16, JetPack 4.2.1, "
        "MAX-N) runs at 45 FPS on a Nano = 167 G MAC/s, 71 % of 236 G MAC/s (published measurement; 97 % at "
        "1024x512); pessimistic 10 %: assumed for this network's 8-32-channel convolutions, which fill few of the "
        "GPU's lanes"
    ),
    "bandwidth_share": "assumed: 80 % (optimistic) / 50 % (pessimistic) of the datasheet bandwidth for streaming activations",
    "kernel_floor_s": (
        "assumed: a kernel launch costs tens of microseconds on a Jetson whatever its size (TensorRT launches from "
        "the CPU; the Nano's Cortex-A57 is slow) - Nano 10 / 50 us, Orin Nano 5 / 25 us; not measured here"
    ),
}

# ops that cost no kernel once TensorRT has built the engine: views and copies it elides
FREE_OPS = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Dropout"}
# ops fused into the convolution / matrix product they follow (its only consumer)
FUSABLE_OPS = {"BatchNormalization", "Relu", "Elu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "Add", "Mul"}
PRODUCERS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


@dataclass
class GraphCost:
    """What one image costs: MACs, GPU kernels per call, fp16 activation bytes read and written by those kernels,
    and the fp16 weight bytes (read once per call)."""

    macs: int
    kernels: int
    activation_bytes: int
    weight_bytes: int


def _shapes(model) -> dict[str, tuple[int, ...]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)  # shape values through Shape -> Reshape
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)  # batch: 1
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _size(shapes: dict, name: str) -> int:
    return int(np.prod(shapes.get(name, ()), dtype=np.int64)) if name else 0


def _node_macs(node, shapes: dict) -> int:
    if node.op_type == "Conv":
        weight = shapes.get(node.input[1], ())
        return _size(shapes, node.output[0]) * int(np.prod(weight[1:])) if weight else 0
    if node.op_type == "ConvTranspose":
        weight = shapes.get(node.input[1], ())  # (C_in, C_out / groups, kh, kw)
        return _size(shapes, node.input[0]) * int(np.prod(weight[1:])) if weight else 0
    if node.op_type in ("MatMul", "Gemm"):
        a = shapes.get(node.input[0], ())
        return _size(shapes, node.output[0]) * (a[-1] if a else 0)
    return 0


def graph_cost(model) -> GraphCost:
    """
    The :class:`GraphCost` of one image through an ONNX model (a path or a ``ModelProto``) exported with a fixed
    input size (batch 1), counted by this rule:

    1. constant folding: a node whose inputs are all initializers, ``Constant`` outputs, shapes (``Shape`` of a
       tensor of known shape) or outputs of such nodes is computed when the engine is built - no kernel;
    2. ``Identity``, ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Dropout`` and ``Concat`` cost no kernel
       (views, and concatenation elided by writing each input into its place in the output);
    3. a ``BatchNormalization``, activation (``Relu``, ``Elu``, ...), ``Add`` or ``Mul`` whose input is the only use of
       a ``Conv`` / ``ConvTranspose`` / ``MatMul`` / ``Gemm`` output is fused into it (conv + norm + activation is
       one kernel);
    4. every other node is one kernel.

    MACs: ``Conv`` output elements x (C_in / groups x kh x kw), ``ConvTranspose`` input elements x (C_out / groups x
    kh x kw), ``MatMul`` / ``Gemm`` output elements x the inner dimension. Activation bytes: fp16 inputs (not
    weights) and outputs of every kernel, a fused chain counted once.
    """
    import onnx

    model = onnx.load(model) if isinstance(model, str) else model
    shapes = _shapes(model)
    static = {init.name for init in model.graph.initializer}
    weights = {init.name for init in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    producer_of: dict[str, object] = {}
    fused_into: set[int] = set()
    kernels, activation, macs = 0, 0, 0
    for index, node in enumerate(model.graph.node):
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or node.op_type == "Shape" or all(name in static for name in inputs):
            static.update(node.output)
            continue
        for name in node.output:
            producer_of[name] = node
        macs += _node_macs(node, shapes)
        if node.op_type in FREE_OPS:
            continue
        source = producer_of.get(inputs[0]) if inputs else None
        if (node.op_type in FUSABLE_OPS and source is not None and consumers.get(inputs[0], 0) == 1
                and (source.op_type in PRODUCERS or id(source) in fused_into)):
            fused_into.add(id(node))
            activation += sum(_size(shapes, n) for n in inputs[1:] if n not in static)  # a residual operand
            activation += sum(_size(shapes, n) for n in node.output) - sum(_size(shapes, n) for n in source.output)
            continue
        kernels += 1
        activation += sum(_size(shapes, n) for n in inputs if n not in weights and n not in static)
        activation += sum(_size(shapes, n) for n in node.output)
    weight_values = sum(_size(shapes, name) for name in weights)
    return GraphCost(macs=int(macs), kernels=kernels, activation_bytes=int(activation) * BYTES_PER_VALUE,
                     weight_bytes=int(weight_values) * BYTES_PER_VALUE)


def batch_seconds(cost: GraphCost, device: Device, scenario: Scenario, batch: int) -> float:
    """``t(B)`` of the module docstring: the time of one call on ``batch`` images."""
    compute = batch * 2 * cost.macs / (device.fp16_peak_flops * scenario.compute_share)
    memory = (batch * cost.activation_bytes + cost.weight_bytes) / (device.bandwidth_bytes_per_s * scenario.bandwidth_share)
    return max(compute, memory) + cost.kernels * scenario.kernel_floor_s


def compute_only_images_per_s(cost: GraphCost, device: Device, share: float) -> float:
    """The MAC-only figure (the old estimate): ``share`` of the peak, no bandwidth, no launch floors."""
    return share * device.fp16_peak_flops / (2 * cost.macs)


def estimate(cost: GraphCost) -> dict:
    """Per device: images/s at batch 1 and batch 32 at both ends of the range, the batch-1 latency (ms), and the
    compute-only figure at the optimistic share (which the model never exceeds)."""
    out = {"cost": asdict(cost)}
    for key, device in DEVICES.items():
        entry = {}
        for end in ("optimistic", "pessimistic"):
            scenario = SCENARIOS[(key, end)]
            entry[end] = {f"b{b}_images_per_s": b / batch_seconds(cost, device, scenario, b) for b in BATCHES}
            entry[end]["b1_latency_ms"] = 1e3 * batch_seconds(cost, device, scenario, 1)
        entry["compute_only_images_per_s"] = compute_only_images_per_s(cost, device, SCENARIOS[(key, "optimistic")].compute_share)
        out[key] = entry
    return out


def assumptions() -> dict:
    """Every assumption of the model with its source, as the bench report records it (docs/jetson.md renders it)."""
    return {
        "devices": {key: asdict(device) for key, device in DEVICES.items()},
        "scenarios": {f"{key}/{end}": asdict(scenario) for (key, end), scenario in SCENARIOS.items()},
        "sources": dict(SCENARIO_SOURCES),
        "bytes_per_value": BYTES_PER_VALUE,
        "batches": list(BATCHES),
    }
