"""Dice + cross-entropy in one pass each way: the per-level losses of the multi-stage loss with hand-written gradients.

At a 16x16 input the head's 256x256 level makes the loss, not the network, the costliest part of a training step:
autograd through MONAI's ``DiceCELoss(softmax=True)`` runs a softmax and a log-softmax, keeps a dozen map-sized
intermediates and walks them back one by one (a channel-wise softmax backward on ``(B, C, H, W)`` is among PyTorch's
slowest CPU kernels). The functions here compute the same values, keep the probabilities only, and write the gradient
from the closed form:

- Dice (``1 - (2 I + s_nr) / (G + P + s_dr)`` per sample and channel, averaged): ``dL/dq = (N / D**2 - 2 t / D) / (B C)``
  with ``N = 2 I + s_nr``, ``D = G + P + s_dr``, ``q`` the probabilities, ``t`` the target;
- softmax: ``dL/dz = p * (g - sum_c p g)``; cross-entropy with probability targets: ``(p * sum_c t - t) / (B H W)``;
- sigmoid: ``dL/dz = g * s * (1 - s)``; binary cross-entropy with logits: ``(s - t) / numel``.

``tests/test_loss.py`` checks values and gradients against MONAI's losses and with ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["softmax_dice_ce", "sigmoid_dice_bce"]


def _dot_per_channel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(spatial dims)`` as ``(B, C, 1, ...)``, as batched BLAS dot products: no map-sized temporary."""
    batch, channels = a.shape[0], a.shape[1]
    dots = torch.bmm(a.reshape(batch * channels, 1, -1), b.reshape(batch * channels, -1, 1))
    return dots.view(batch, channels, *([1] * (a.dim() - 2)))


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


def _dice_and_save(ctx, probs: torch.Tensor, target: torch.Tensor, smooth_nr: float, smooth_dr: float, weights: tuple[float, float]) -> torch.Tensor:
    """The mean Dice loss; saves what a backward needs (probabilities, target, Dice terms) and the two terms' weights."""
    numerator, denominator = _dice_terms(probs, target, smooth_nr, smooth_dr)
    ctx.save_for_backward(probs, target, numerator, denominator)
    ctx.weights = weights
    return (1.0 - numerator / denominator).mean()


def _saved_dice_gradient(ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """From what :func:`_dice_and_save` kept: the probabilities ``q``, the target, the new map ``q * dDice/dq`` and the
    other term's weight."""
    probs, target, numerator, denominator = ctx.saved_tensors
    dice_weight, other_weight = ctx.weights
    return probs, target, _dice_gradient(target, numerator, denominator, dice_weight).mul_(probs), other_weight


class _SoftmaxDiceCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, lambda_dice, lambda_ce, smooth_nr, smooth_dr):  # noqa: D102
        log_probs = torch.log_softmax(logits, dim=1)
        pixels = logits.numel() // logits.shape[1]
        cross_entropy = -_dot_per_channel(target, log_probs).sum() / pixels
        dice = _dice_and_save(ctx, log_probs.exp_(), target, smooth_nr, smooth_dr, (lambda_dice, lambda_ce / pixels))
        return lambda_dice * dice + lambda_ce * cross_entropy

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        # Dice through the softmax: p * (g - sum_c p g); cross-entropy: p * sum_c t - t. Together:
        # p g - p * (sum_c p g - w sum_c t) - w t, built in the one new map
        probs, target, grad_logits, ce_weight = _saved_dice_gradient(ctx)
        per_pixel = grad_logits.sum(dim=1, keepdim=True).sub_(target.sum(dim=1, keepdim=True), alpha=ce_weight)
        grad_logits.addcmul_(probs, per_pixel, value=-1.0).sub_(target, alpha=ce_weight)
        return grad_logits.mul_(grad), None, None, None, None, None


class _SigmoidDiceBCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, lambda_dice, lambda_bce, smooth_nr, smooth_dr):  # noqa: D102
        dice = _dice_and_save(ctx, torch.sigmoid(logits), target, smooth_nr, smooth_dr, (lambda_dice, lambda_bce / logits.numel()))
        return lambda_dice * dice + lambda_bce * F.binary_cross_entropy_with_logits(logits, target)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        # Dice through the sigmoid: g * s * (1 - s); binary cross-entropy: w * (s - t); in the one new map
        probs, target, grad_logits, bce_weight = _saved_dice_gradient(ctx)
        grad_logits.addcmul_(grad_logits, probs, value=-1.0).add_(probs, alpha=bce_weight).sub_(target, alpha=bce_weight)
        return grad_logits.mul_(grad), None, None, None, None, None


def softmax_dice_ce(logits: torch.Tensor, target: torch.Tensor, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                    smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> torch.Tensor:
    """MONAI's ``DiceCELoss(softmax=True, lambda_dice=..., lambda_ce=...)`` (its other arguments at their defaults) on
    ``(B, C, ...)`` logits, ``C > 1``, and ``(B, C, ...)`` one-hot or probability targets, with a hand-written
    backward (see the module docstring)."""
    if logits.shape != target.shape or logits.shape[1] < 2:
        raise ValueError(f"softmax_dice_ce takes (B, C>1, ...) logits and targets of the same shape, got {tuple(logits.shape)} and {tuple(target.shape)}.")
    return _SoftmaxDiceCE.apply(logits, target.to(logits.dtype), lambda_dice, lambda_ce, smooth_nr, smooth_dr)


def sigmoid_dice_bce(logits: torch.Tensor, target: torch.Tensor, lambda_dice: float = 1.0, lambda_bce: float = 1.0,
                     smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> torch.Tensor:
    """``lambda_dice * DiceLoss(sigmoid=True) + lambda_bce * BCEWithLogitsLoss()`` (MONAI's and PyTorch's, defaults
    otherwise) on ``(B, K, ...)`` logits and targets of the same shape, with a hand-written backward."""
    if logits.shape != target.shape:
        raise ValueError(f"sigmoid_dice_bce takes logits and targets of the same shape, got {tuple(logits.shape)} and {tuple(target.shape)}.")
    return _SigmoidDiceBCE.apply(logits, target.to(logits.dtype), lambda_dice, lambda_bce, smooth_nr, smooth_dr)
