"""TorchScript export of a bundle network's eval-mode graph (``models/model.ts`` of a packed bundle)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["export_torchscript"]


def export_torchscript(
    network: nn.Module, input_shape: tuple[int, ...], path: str, extra_files: dict[str, bytes] | None = None, atol: float = 1e-4
) -> str:
    """
    Save ``network`` in eval mode as TorchScript to ``path`` with ``extra_files`` (``monai.bundle ckpt_export``
    stores ``metadata.json`` and the inference config this way). Returns how: ``"script"`` (what ``ckpt_export``
    does), or ``"trace"`` on an ``input_shape`` ``(1, C, r, r)`` example when scripting fails - ``torch.jit.script``
    is deprecated in current PyTorch and does not compile every Python construct; the eval graph has no
    data-dependent control flow, so the trace is exact for ``r x r`` inputs with any batch size.
    Checked either way: the saved module on a batch of 3 equals the network within ``atol``.
    """
    was_training = network.training
    network.eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(input_shape, generator=generator)
    check = torch.randn((3,) + tuple(input_shape[1:]), generator=generator)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notices; TracerWarnings on shape checks (constant for r x r)
            try:
                module, method = torch.jit.script(network), "script"
            except Exception:  # TorchScript's frontend raises several types for unsupported Python
                module, method = torch.jit.trace(network, example, check_trace=False), "trace"
            torch.jit.save(module, path, _extra_files=extra_files or {})
            difference = float((torch.jit.load(path)(check) - network(check)).abs().max())
    finally:
        network.train(was_training)
    if not difference <= atol:
        raise RuntimeError(f"{path}: the TorchScript module ({method}) differs from the network by {difference:.2e}.")
    return method
