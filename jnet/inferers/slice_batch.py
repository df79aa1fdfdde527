"""Run a 2D network on every axial slice of a volume, many slices per forward pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["SliceBatchInferer"]


class SliceBatchInferer(Inferer):
    """
    Apply a 2D network to each slice along the last axis of ``(B, C, H, W, D)`` volumes, ``batch_size`` slices
    per call, and stack the results back: ``(B, K, H', W', D)``. The 2D network may change the in-plane size
    (a 16x16 input slice gives a 256x256 prediction), unlike MONAI's ``SliceInferer``, which windows each slice.

    Args:
        batch_size: slices per network call.
        channels_last: hand the network each batch of slices in ``torch.channels_last`` memory format (the same
            values, NHWC strides): on CPU PyTorch's convolutions then skip their format conversions, which makes
            these networks faster, with outputs equal to float tolerance (tests/test_inferers.py). The network
            itself is not changed.
    """

    def __init__(self, batch_size: int = 32, channels_last: bool = False) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"SliceBatchInferer expects (B, C, H, W, D) volumes, got shape {tuple(inputs.shape)}.")
        batch, channels, height, width, depth = inputs.shape
        slices = torch.as_tensor(inputs).permute(0, 4, 1, 2, 3).reshape(batch * depth, channels, height, width)
        outputs = [network(chunk.contiguous(memory_format=self.memory_format), *args, **kwargs) for chunk in torch.split(slices, self.batch_size)]
        predicted = torch.cat(outputs, dim=0)
        out = predicted.reshape(batch, depth, *predicted.shape[1:]).permute(0, 2, 3, 4, 1)
        return out.contiguous()
