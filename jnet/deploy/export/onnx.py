"""ONNX export of a bundle network's eval-mode graph (one high-resolution output, dynamic batch)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["export_onnx", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "image"
OUTPUT_NAME = "pred"


def export_onnx(network: nn.Module, input_shape: tuple[int, ...], path: str, opset: int = 17) -> str:
    """
    Export ``network`` in eval mode to ``path``: input ``image`` ``(batch, C, r, r)`` float32, output ``pred``
    ``(batch, K, 256, 256)`` logits, the batch axis dynamic. Uses the TorchScript-based exporter
    (``dynamo=False``): torch 2.13 defaults to the dynamo exporter, which needs ``onnxscript``, and opset 13 -
    what TensorRT 8.2 on JetPack 4.6 parses - is only reliable through the TorchScript path. Traced without
    autograd, the upscaling head's folded kernels enter the graph as constants. The output's class and spatial
    axes are declared with their sizes in the file.
    """
    was_training = network.training
    network.eval()
    example = torch.zeros(input_shape)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            output_shape = tuple(network(example).shape)  # the head folds its kernels once: constants in the trace
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network,
                example,
                path,
                opset_version=opset,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    finally:
        network.train(was_training)
    _declare_fixed_output_dims(path, output_shape)
    return path


def _declare_fixed_output_dims(path: str, output_shape: tuple[int, ...]) -> None:
    """The exporter names every output axis after a Reshape (``Reshapepred_dim_1`` ...), as if all were dynamic:
    declare the class and spatial axes with their values (only the batch stays symbolic), as TensorRT and other
    consumers of the file read them."""
    import onnx

    model = onnx.load(path)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for axis, size in enumerate(output_shape[1:], start=1):
        dims[axis].dim_value = int(size)
    onnx.checker.check_model(model)
    onnx.save(model, path)
