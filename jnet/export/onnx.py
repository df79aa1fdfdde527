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
    autograd, the upscaling head's folded kernels enter the graph as constants.
    """
    was_training = network.training
    network.eval()
    example = torch.zeros(input_shape)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            network(example)  # the head folds its kernels once; traced without autograd they are constants
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
    return path
