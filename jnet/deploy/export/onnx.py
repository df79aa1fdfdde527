"""ONNX export of a bundle network's eval-mode graph (one high-resolution output, dynamic batch)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["export_onnx", "fold_constants", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "image"
OUTPUT_NAME = "pred"


def export_onnx(network: nn.Module, input_shape: tuple[int, ...], path: str, opset: int = 17) -> str:
    """
    Export ``network`` in eval mode to ``path``: input ``image`` ``(batch, C, r, r)`` float32, output ``pred``
    ``(batch, K, 256, 256)`` logits, the batch axis dynamic. Uses the TorchScript-based exporter
    (``dynamo=False``): torch 2.13 defaults to the dynamo exporter, which needs ``onnxscript``, and opset 13 -
    what TensorRT 8.2 on JetPack 4.6 parses - is only reliable through the TorchScript path. Traced without
    autograd, the upscaling head's folded kernels enter the graph as constants. Every node whose inputs are all
    constants is then evaluated once and stored as an initializer (:func:`fold_constants`): no ``Constant`` nodes,
    and every ``Pad``, ``Reshape`` and ``Resize`` takes initializer inputs, as TensorRT 7/8 parsers want
    (``inputs.at(1).is_weights()``). The output's class and spatial axes are declared with their sizes in the file.
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
    import onnx

    onnx.save(fold_constants(onnx.load(path)), path)
    _declare_fixed_output_dims(path, output_shape)
    return path


FOLD_LIMIT = 1 << 22  # elements: a constant subgraph whose result is larger stays a computation in the graph


def fold_constants(model):
    """
    ``model`` (an ``onnx.ModelProto``, changed in place and returned) with every node whose inputs are all
    initializers or ``Constant`` outputs replaced by its result as an initializer - evaluated with ONNX's own
    reference implementation, so the values are the operators' definition - and the initializers no node uses
    dropped. What depends on the graph input (the dynamic batch) is left as it is.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type != "Constant" and not (inputs and all(name in known for name in inputs)):
            kept.append(node)
            continue
        single = helper.make_model(
            helper.make_graph(
                [node], "fold",
                [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(known[name].dtype), known[name].shape) for name in inputs],
                [helper.make_empty_tensor_value_info(name) for name in node.output],
            ),
            opset_imports=model.opset_import,
        )
        values = ReferenceEvaluator(single).run(None, {name: known[name] for name in inputs})
        if any(np.asarray(v).size > FOLD_LIMIT for v in values):
            kept.append(node)
            continue
        known.update((name, np.asarray(value)) for name, value in zip(node.output, values))
    used = {name for node in kept for name in node.input} | {output.name for output in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in known.items() if name in used)
    onnx.checker.check_model(model)
    return model


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
