"""A trainer's ``prepare_batch`` that hands the loss the high-resolution image next to the label."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import torch
from monai.engines import PrepareBatch, default_prepare_batch

from jnet.losses.auxiliary import TrainingTargets

__all__ = ["PrepareBatchHighRes", "PrepareBatchAnySize", "downsample_batch", "level_weighted_cycle", "weighted_cycle"]

LOWRES_TORCH_MODES = {"area": "area", "nearest": "nearest", "nearest-exact": "nearest-exact", "bilinear": "bilinear"}


def downsample_batch(images: torch.Tensor, size: int, mode: str = "area") -> torch.Tensor:
    """``(B, C, H, W)`` images to ``(B, C, size, size)`` as :class:`jnet.transforms.LowResInputd` does one image
    (``area``: the mean of the covered pixels; ``nearest``, ``nearest-exact``, ``bilinear``)."""
    if mode not in LOWRES_TORCH_MODES:
        raise ValueError(f"mode must be one of {tuple(LOWRES_TORCH_MODES)}, got {mode!r}.")
    if tuple(images.shape[-2:]) == (size, size):
        return images
    align = {"align_corners": False} if mode == "bilinear" else {}
    return torch.nn.functional.interpolate(images, size=(size, size), mode=LOWRES_TORCH_MODES[mode], **align)


def weighted_cycle(weights: Mapping[int, int]) -> list[int]:
    """The iteration cycle of one :class:`PrepareBatchAnySize` training with ``weights[r]`` iterations at input size
    ``r`` in every ``sum(weights)``, spread out (smooth weighted round robin: each turn the size furthest behind its
    share, the smaller first on a tie; across the end of one cycle and the start of the next a size may come twice).
    ``{16: 4, 32: 3, 64: 2, 128: 1}`` gives 16, 32, 64, 16, 32, 128, 16, 64, 32, 16."""
    if not weights or any(int(w) != w or w < 1 for w in weights.values()):
        raise ValueError(f"every input size needs a whole weight >= 1, got {dict(weights)}.")
    weights = {int(size): int(weight) for size, weight in sorted(weights.items())}
    total, credit, cycle = sum(weights.values()), dict.fromkeys(weights, 0), []
    for _ in range(total):
        for size, weight in weights.items():
            credit[size] += weight
        chosen = max(weights, key=lambda size: (credit[size], -size))
        credit[chosen] -= total
        cycle.append(chosen)
    return cycle


def level_weighted_cycle(sizes: tuple[int, ...] | list[int], output_size: int = 256) -> list[int]:
    """:func:`weighted_cycle` in which each input size ``r`` gets as many iterations as the head levels it runs,
    ``log2(output_size / r)`` (16, 32, 64, 128 -> 4 : 3 : 2 : 1 of every 10): for the default sizes 16, 32, 64, 16,
    32, 128, 16, 64, 32, 16. The smaller sizes run more levels and cost less per iteration; a 128x128 iteration
    costs about as much as ten at 16x16."""
    weights = {int(s): int(round(math.log2(output_size / int(s)))) for s in sizes}
    if any(w < 1 for w in weights.values()):
        raise ValueError(f"every input size must be smaller than output_size ({output_size}), got {sorted(sizes)}.")
    return weighted_cycle(weights)


class PrepareBatchHighRes(PrepareBatch):
    """
    ``(image, TrainingTargets(label, highres))`` for MONAI's ``SupervisedTrainer``: the network gets the low-resolution
    input as usual, the loss (:class:`jnet.losses.DistillationLoss`, :class:`jnet.losses.SuperResolutionLoss`) also
    the high-resolution image that ``batchdata[highres_key]`` holds (copied before ``LowResInputd``: the train
    config's ``highres_key``).

    Args:
        highres_key: the batch key of the high-resolution image.
    """

    def __init__(self, highres_key: str = "image_highres") -> None:
        self.highres_key = highres_key

    def __call__(
        self, batchdata: Mapping[str, torch.Tensor], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ) -> tuple[torch.Tensor, TrainingTargets]:
        if self.highres_key not in batchdata:
            raise KeyError(
                f"PrepareBatchHighRes: the batch has no '{self.highres_key}' (set highres_key in the train config so the "
                "high-resolution image is kept before LowResInputd)."
            )
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        highres = batchdata[self.highres_key].to(device=device, non_blocking=non_blocking)
        highres = highres.as_tensor() if hasattr(highres, "as_tensor") else highres  # a MetaTensor: its data only
        return image, TrainingTargets(label, highres)


class PrepareBatchAnySize(PrepareBatch):
    """
    ``(image at this iteration's input size, label)`` for MONAI's ``SupervisedTrainer`` training one
    :class:`jnet.networks.SwitchableJNet` on every input size in one run (issue 16): the batch holds the slices at
    the full output resolution (the train config's ``train_input_size`` is ``output_size``), and each iteration
    downsamples them to the next size of ``sizes`` in turn (:func:`downsample_batch`), so every size gets the same
    number of iterations. The label stays at full resolution, for the multi-stage loss of the levels that size uses.

    With ``keep_batches`` it keeps the latest that many full-resolution image batches in :attr:`recent` (detached),
    from which :class:`jnet.handlers.SizeStatisticsCalibration` computes the per-size BatchNorm statistics.

    Args:
        sizes: the input sides to cycle through, in order.
        mode: the downsampling, as the bundle's ``lowres_mode``.
        keep_batches: how many of the latest batches to keep (0: none).
    """

    def __init__(self, sizes: tuple[int, ...] | list[int], mode: str = "area", keep_batches: int = 0) -> None:
        if not sizes:
            raise ValueError("sizes must name at least one input size.")
        downsample_batch(torch.zeros(1, 1, 4, 4), 4, mode)  # refuses an unknown mode here, not at the first iteration
        self.sizes = tuple(int(s) for s in sizes)
        self.mode = mode
        self.calls = 0
        self.keep_batches = int(keep_batches)
        self.recent: deque[torch.Tensor] = deque(maxlen=max(self.keep_batches, 1))

    def __call__(
        self, batchdata: Mapping[str, torch.Tensor], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        size = self.sizes[self.calls % len(self.sizes)]
        self.calls += 1
        image = image.as_tensor() if hasattr(image, "as_tensor") else image
        if self.keep_batches:
            self.recent.append(image.detach())
        return downsample_batch(image, size, self.mode), label
