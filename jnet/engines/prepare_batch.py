"""A trainer's ``prepare_batch`` that hands the loss the high-resolution image next to the label."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.engines import PrepareBatch, default_prepare_batch

from jnet.losses.auxiliary import TrainingTargets

__all__ = ["PrepareBatchHighRes"]


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
