"""Dice + cross-entropy over softmax classes: MONAI's ``DiceCELoss(softmax=True)`` with a hand-written gradient.

At a 16x16 input the head's 256x256 level makes the loss a large part of a training step: autograd through MONAI's
``DiceCELoss(softmax=True)`` runs a softmax and a log-softmax, keeps several map-sized intermediates and walks them
back one by one, each new map-sized tensor fresh pages from the kernel. The functions here compute the same values,
keep the probabilities only, take the per-channel sums as BLAS dot products, and write the gradient in one new map
from the closed form:

- Dice (``1 - (2 I + s_nr) / (G + P + s_dr)`` per sample and channel, averaged): ``dL/dq = (N / D**2 - 2 t / D) / (B C)``
  with ``N = 2 I + s_nr``, ``D = G + P + s_dr``, ``q`` the probabilities, ``t`` the target;
- softmax: ``dL/dz = p * (g - sum_c p g)``; cross-entropy with probability targets: ``(p * sum_c t - t) / (B H W)``;

``tests/test_loss.py`` checks values and gradients against MONAI's ``DiceCELoss`` and with ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.autograd.function import once_differentiable
from torch.nn.modules.loss import _Loss

__all__ = ["SoftmaxDiceCELoss", "softmax_dice_ce"]


DOT_CHUNK = 1024  # the longest run one BLAS dot accumulates; the partial sums are then added by torch.sum


@lru_cache(maxsize=64)  # a few map sizes per training, asked at every step
def _chunk_length(n: int, longest: int = DOT_CHUNK) -> int:
    """The largest divisor of ``n`` that is at most ``longest``."""
    return next(length for length in range(min(n, longest), 0, -1) if n % length == 0)


def _dot_per_channel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(spatial dims)`` as ``(B, C, 1, ...)``, as batched BLAS dot products over runs of at most
    :data:`DOT_CHUNK` pixels, their partial sums added by ``torch.sum``: no map-sized temporary, and float32
    accuracy - one BLAS dot over a whole 256x256 map accumulates rounding errors, up to 3e-4 of the loss on a
    uniform slice (tests/test_loss.py)."""
    batch, channels = a.shape[0], a.shape[1]
    pixels = a[0, 0].numel()
    length = _chunk_length(pixels)
    runs = batch * channels * (pixels // length)
    dots = torch.bmm(a.reshape(runs, 1, length), b.reshape(runs, length, 1))
    return dots.view(batch, channels, -1).sum(2).view(batch, channels, *([1] * (a.dim() - 2)))


def _dice_terms(probs: torch.Tensor, target: torch.Tensor, smooth_nr: float, smooth_dr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and channel (kept as ``(B, C, 1, ...)``): the Dice numerator ``2 I + s_nr`` and denominator
    ``G + P + s_dr`` of MONAI's ``DiceLoss`` (``squared_pred=False``, ``jaccard=False``, ``batch=False``)."""
    dims = tuple(range(2, probs.dim()))
    numerator = 2.0 * _dot_per_channel(probs, target) + smooth_nr
    denominator = target.sum(dims, keepdim=True) + probs.sum(dims, keepdim=True) + smooth_dr
    return numerator, denominator


def _dice_gradient(target: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight * d(mean Dice loss) / d(probabilities)``: a new map of the target's shape (the only one the backward
    makes; every later step is in place - each new map-sized tensor costs fresh pages from the kernel)."""
    scale = weight / (numerator.shape[0] * numerator.shape[1])
    return (target * (-2.0 * scale / denominator)).add_(numerator / denominator.square() * scale)


class _SoftmaxDiceCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, lambda_dice, lambda_ce, smooth_nr, smooth_dr):  # noqa: D102
        log_probs = torch.log_softmax(logits, dim=1)
        pixels = logits.numel() // logits.shape[1]
        cross_entropy = -_dot_per_channel(target, log_probs).sum() / pixels
        probs = log_probs.exp_()
        numerator, denominator = _dice_terms(probs, target, smooth_nr, smooth_dr)
        ctx.save_for_backward(probs, target, numerator, denominator)
        ctx.weights = (lambda_dice, lambda_ce / pixels)
        return lambda_dice * (1.0 - numerator / denominator).mean() + lambda_ce * cross_entropy

    @staticmethod
    @once_differentiable  # the saved probabilities carry no graph: a second derivative raises, not a wrong value
    def backward(ctx, grad):  # noqa: D102
        probs, target, numerator, denominator = ctx.saved_tensors
        dice_weight, ce_weight = ctx.weights
        # Dice through the softmax: p * (g - sum_c p g); cross-entropy: p * sum_c t - t. Together:
        # p g - p * (sum_c p g - w sum_c t) - w t, built in the one new map
        grad_logits = _dice_gradient(target, numerator, denominator, dice_weight).mul_(probs)
        per_pixel = grad_logits.sum(dim=1, keepdim=True).sub_(target.sum(dim=1, keepdim=True), alpha=ce_weight)
        grad_logits.addcmul_(probs, per_pixel, value=-1.0).sub_(target, alpha=ce_weight)
        return grad_logits.mul_(grad), None, None, None, None, None


def softmax_dice_ce(logits: torch.Tensor, target: torch.Tensor, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                    smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> torch.Tensor:
    """MONAI's ``DiceCELoss(softmax=True, lambda_dice=..., lambda_ce=...)`` (its other arguments at their defaults) on
    ``(B, C, ...)`` logits, ``C > 1``, and ``(B, C, ...)`` one-hot or probability targets, with a hand-written
    backward (see the module docstring). Always in float32 at least (float64 stays float64), autocast or not: its per-channel sums run over every
    pixel (65,536 at 256x256, past float16's largest value) - as MONAI's loss keeps its sums in float32 under autocast."""
    if logits.shape != target.shape or logits.shape[1] < 2:
        raise ValueError(f"softmax_dice_ce takes (B, C>1, ...) logits and targets of the same shape, got {tuple(logits.shape)} and {tuple(target.shape)}.")
    dtype = torch.promote_types(logits.dtype, torch.float32)  # float16/bfloat16 up, float64 kept
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return _SoftmaxDiceCE.apply(logits.to(dtype), target.to(dtype), lambda_dice, lambda_ce, smooth_nr, smooth_dr)


class SoftmaxDiceCELoss(_Loss):
    """
    ``lambda_dice * DiceLoss(softmax=True) + lambda_ce * CrossEntropyLoss`` on ``(B, C, ...)`` logits and ``(B, C, ...)``
    one-hot (or probability) targets: the values of MONAI's ``DiceCELoss(softmax=True)`` with its other arguments at
    their defaults, and their gradients, from :func:`softmax_dice_ce`'s closed-form backward
    instead of autograd through the softmax (forward + backward on ``(16, 3, 256, 256)`` logits: 16 ms against MONAI's
    19-23 ms on the project's 2-core x86_64 CPU, idle; ``tests/test_loss.py`` compares values and gradients).

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
