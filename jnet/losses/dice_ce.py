"""Dice + cross-entropy over softmax classes: MONAI's ``DiceCELoss(softmax=True)``, computed in one pass each way."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

from .fused_dice import softmax_dice_ce

__all__ = ["SoftmaxDiceCELoss"]


class SoftmaxDiceCELoss(_Loss):
    """
    ``lambda_dice * DiceLoss(softmax=True) + lambda_ce * CrossEntropyLoss`` on ``(B, C, ...)`` logits and ``(B, C, ...)``
    one-hot (or probability) targets: the values of MONAI's ``DiceCELoss(softmax=True)`` with its other arguments at
    their defaults, and their gradients, from :func:`~jnet.losses.fused_dice.softmax_dice_ce`'s closed-form backward
    instead of autograd through the softmax (2.5x faster on CPU at the 256x256 level; ``tests/test_loss.py`` compares
    both with MONAI's loss).

    Args:
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
        smooth_nr: added to the Dice numerator (MONAI's default).
        smooth_dr: added to the Dice denominator (MONAI's default).
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> None:
        super().__init__()
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return softmax_dice_ce(input, target, self.lambda_dice, self.lambda_ce, self.smooth_nr, self.smooth_dr)
