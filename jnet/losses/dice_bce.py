"""Dice + binary cross-entropy for overlapping sigmoid channels (BraTS' TC / WT / ET)."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch.nn.modules.loss import _Loss

__all__ = ["DiceBCELoss"]


class DiceBCELoss(_Loss):
    """
    ``lambda_dice * DiceLoss(sigmoid=True) + lambda_bce * BCEWithLogits`` on ``(B, K, ...)`` logits and ``(B, K, ...)``
    binary (or soft) targets, every channel its own sigmoid.

    MONAI's ``DiceCELoss(sigmoid=True)`` applies a SOFTMAX cross-entropy across the channels whenever there is more
    than one: for overlapping regions that makes the channels compete and gives no push towards "no region" where
    every target channel is 0 - measured here as whole-tumour over-segmentation on BraTS. This loss keeps each
    channel binary.

    Args:
        lambda_dice: weight of the Dice term.
        lambda_bce: weight of the binary cross-entropy term.
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_bce: float = 1.0) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True)
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.lambda_dice = lambda_dice
        self.lambda_bce = lambda_bce

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return self.lambda_dice * self.dice(input, target) + self.lambda_bce * self.bce(input, target.float())
