"""Run a 2D network on every axial slice of a volume, many slices per forward pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

__all__ = ["SliceBatchInferer", "slices_per_call"]

CPU_SLICE_PIXELS = 32 * 32 * 32  # input pixels per call on a CPU: 32 slices of 32x32


def slices_per_call(input_size: int, device: str | torch.device = "cpu") -> int:
    """The bundles' inferer batch for ``input_size`` x ``input_size`` slices: 32 on a GPU; on a CPU about as many
    input pixels per call as 32 slices of 32x32 (32 slices up to 32x32, 8 at 64x64, 4 from 128x128 on), because
    there a call whose activations are tens of MB pays for fresh memory every time and per-slice throughput FALLS
    with the batch. Measured (PyTorch eager, channels_last, 2-core x86 VM, prostate networks; slices/s at batch 1 /
    4 / 8 / 32): 64x64 113 / 232 / 244 / 207, 128x128 53 / 73 / 64 / 55; at 16x16 it rises up to 32 (387 -> 1882)."""
    if torch.device(device).type != "cpu":
        return 32
    return max(4, min(32, CPU_SLICE_PIXELS // (int(input_size) ** 2)))


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor sharing ``tensor``'s memory (a MetaTensor's batched metadata is not sliced with it)."""
    return tensor.as_tensor() if isinstance(tensor, MetaTensor) else tensor


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
        out, first, start = None, None, 0
        for chunk in torch.split(slices, self.batch_size):
            predicted = network(chunk.contiguous(memory_format=self.memory_format), *args, **kwargs)
            if out is None:  # one output of the whole result's size, filled chunk by chunk: no list of chunks + cat
                first = predicted
                out = torch.empty((batch, predicted.shape[1], *predicted.shape[2:], depth), dtype=predicted.dtype, device=predicted.device)
            self._fill(out, _plain(predicted), start, depth)
            start += chunk.shape[0]
        if isinstance(first, MetaTensor):  # the network's metadata (the batch's), as a concatenation of its outputs had
            out = MetaTensor(out)
            out.copy_meta_from(first)
        return out

    @staticmethod
    def _fill(out: torch.Tensor, predicted: torch.Tensor, start: int, depth: int) -> None:
        """Write the ``(n, K, H', W')`` predictions of flat slices ``start .. start + n`` (volume-major) into
        ``out[b, :, :, :, d]``; a chunk may span two volumes."""
        position, end = start, start + predicted.shape[0]
        while position < end:
            volume, slice_index = divmod(position, depth)
            count = min(end - position, depth - slice_index)
            part = predicted[position - start : position - start + count]
            out[volume, ..., slice_index : slice_index + count] = part.permute(1, 2, 3, 0)
            position += count
