"""Multiply-accumulate counts of a forward pass (convolutions and linear layers; norms and activations excluded)."""

from __future__ import annotations

import torch
from torch import nn

from jnet.networks.upscaling_head import UpscalingHead

__all__ = ["count_macs", "head_macs"]


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kernel = module.kernel_size[0] * module.kernel_size[1]
    return output.numel() * (module.in_channels // module.groups) * kernel


def _conv_transpose_macs(module: nn.ConvTranspose2d, inputs: torch.Tensor) -> int:
    kernel = module.kernel_size[0] * module.kernel_size[1]
    return inputs.numel() * (module.out_channels // module.groups) * kernel


def head_macs(head: UpscalingHead, batch: int, height: int, width: int, levels: int | None = None) -> int:
    """MACs of the head as the plain layers it is defined by (class-wise ConvTranspose 2x2 + 3x3 conv per level,
    and the skip chain's transposed convs), for a ``(batch, C, height, width)`` logit map; ``levels``: only the last
    ``levels`` levels run (a resolution-switchable network's larger inputs)."""
    classes = head.level_modules[0].num_classes if head.levels else 0
    used = list(head.level_modules)[head.levels - (head.levels if levels is None else levels) :]
    total = 0
    for k, level in enumerate(used):
        pixels = batch * classes * (height << k) * (width << k)
        total += level.num_inputs * pixels * 4  # transposed convs: 4 MACs per input pixel per class
        total += level.num_inputs * pixels * 4 * 9  # 3x3 conv on the doubled map, per input per class
        if head.skip and k >= 1:
            total += (pixels // 4) * 4  # the skip chain's transposed conv bringing the base logits to this level
    return total


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of ``model`` in eval mode on one input of ``input_shape`` (batch included)."""
    total = 0
    handles = []

    def conv_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            total += _conv_transpose_macs(module, inputs[0])
        elif isinstance(module, nn.Conv2d):
            total += _conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    def head_hook(module: UpscalingHead, inputs: tuple[torch.Tensor, ...], kwargs: dict, output: object) -> None:
        nonlocal total
        batch, _, height, width = inputs[0].shape
        total += head_macs(module, batch, height, width, kwargs.get("levels"))

    # the head is counted as the layers that define it; its own modules only run on its tiny kernel-folding probe
    in_heads = {id(m) for head in model.modules() if isinstance(head, UpscalingHead) for m in head.modules()}
    for module in model.modules():
        if isinstance(module, UpscalingHead):
            handles.append(module.register_forward_hook(head_hook, with_kwargs=True))
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and id(module) not in in_heads:
            handles.append(module.register_forward_hook(conv_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
