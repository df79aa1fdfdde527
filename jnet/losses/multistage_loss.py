"""The J-Net multi-stage loss: one loss term per head level against the ground truth resized to that level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.losses import DeepSupervisionLoss
from torch.nn.modules.loss import _Loss

from .dice_ce import SoftmaxDiceCELoss

__all__ = ["MultiStageLoss", "level_targets", "one_hot_channels"]

TARGET_MODES = ("nearest", "soft")


def _nearest(target: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``F.interpolate(target, size, mode="nearest-exact")``; for a size that divides the target's, the same pixels
    picked by a strided view (output pixel ``i`` reads input pixel ``f * i + f // 2`` of the factor ``f``: the
    ``nearest-exact`` rule ``floor((i + 0.5) * f)``), which costs nothing to build."""
    height, width = target.shape[2], target.shape[3]
    if height % size[0] or width % size[1]:  # interpolate takes floating point (class indices may be integers)
        return F.interpolate(target if target.is_floating_point() else target.float(), size=size, mode="nearest-exact")
    fy, fx = height // size[0], width // size[1]
    if fy == fx == 1:
        return target
    return target[:, :, fy // 2 :: fy, fx // 2 :: fx]


def one_hot_channels(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, 1, H, W)`` class indices (any dtype holding integers) to ``(B, num_classes, H, W)`` float one-hot: the
    values of ``F.one_hot(...).permute(0, 3, 1, 2).float()``, written in one pass (a scatter into zeros) rather
    than as an int64 map, a permuted copy and a float copy."""
    shape = (indices.shape[0], num_classes, *indices.shape[2:])
    return torch.zeros(shape, dtype=torch.float, device=indices.device).scatter_(1, indices.long(), 1.0)


def level_targets(target: torch.Tensor, sizes: Sequence[Sequence[int]], intermediate: str = "nearest") -> list[torch.Tensor]:
    """
    The ground truth resized to every level's spatial size.

    Args:
        target: ``(B, K, H, W)`` float one-hot / multi-channel target at full resolution.
        sizes: spatial size of each level, highest resolution first.
        intermediate: ``"nearest"`` (``nearest-exact``) for every level, or ``"soft"``: area-averaged (the
            share of each class in the covered high-resolution pixels) for the levels between the highest and
            the lowest, nearest at the lowest - as the paper's code (linear in between, nearest at the ends).
    """
    if intermediate not in TARGET_MODES:
        raise ValueError(f"intermediate must be one of {TARGET_MODES}, got {intermediate!r}.")
    resized = []
    for index, size in enumerate(sizes):
        if tuple(size) == tuple(target.shape[2:]):
            resized.append(target)
        elif intermediate == "soft" and 0 < index < len(sizes) - 1:
            resized.append(F.adaptive_avg_pool2d(target, tuple(size)))
        else:
            resized.append(_nearest(target, tuple(size)))
    return resized


class MultiStageLoss(DeepSupervisionLoss):
    """
    Multi-stage loss of J-Net (Ostrowski et al., arXiv 2403.05340): the weighted sum, over the head's levels,
    of ``loss(level_logits, target resized to the level)``. Builds on MONAI's ``DeepSupervisionLoss`` (its
    weighting), adding one-hot conversion before resizing and soft intermediate targets.

    Shapes: ``input`` is a list of logits ``(B, K, h_l, w_l)`` highest resolution first (or one tensor);
    ``target`` is ``(B, 1, H, W)`` class indices (when ``num_classes`` is set) or ``(B, K, H, W)`` channels
    (BraTS-style overlapping regions), at the highest resolution.

    Args:
        loss: the per-level loss, taking one-hot/multi-channel targets (default :class:`SoftmaxDiceCELoss`: the values
            of MONAI's ``DiceCELoss(softmax=True)``).
        num_classes: convert class-index targets to this many one-hot channels; ``None`` if already channels.
        weights: one weight per level, highest resolution first; default equal weights (1.0 each).
        intermediate_targets: ``"nearest"`` or ``"soft"``, see :func:`level_targets`.
    """

    def __init__(
        self,
        loss: _Loss | None = None,
        num_classes: int | None = None,
        weights: Sequence[float] | None = None,
        intermediate_targets: str = "nearest",
    ) -> None:
        super().__init__(
            loss if loss is not None else SoftmaxDiceCELoss(),
            weight_mode="same",
            weights=None if weights is None else [float(w) for w in weights],
        )
        if intermediate_targets not in TARGET_MODES:
            raise ValueError(f"intermediate_targets must be one of {TARGET_MODES}, got {intermediate_targets!r}.")
        self.num_classes = num_classes
        self.intermediate_targets = intermediate_targets

    def forward(self, input: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        logits = list(input) if isinstance(input, (list, tuple)) else [input]
        if self.weights is not None and len(self.weights) < len(logits):
            raise ValueError(f"{len(self.weights)} loss weights given for {len(logits)} output levels.")
        if isinstance(target, MetaTensor):
            target = target.as_tensor()
        sizes = [x.shape[2:] for x in logits]
        if self.num_classes is not None and target.shape[1] == 1:
            targets = self._one_hot_targets(target, sizes)
        else:
            targets = level_targets(target.float(), sizes, self.intermediate_targets)
        weights = self.get_weights(levels=len(logits))
        total = torch.zeros((), dtype=torch.float, device=target.device)
        for weight, level_logits, level_target in zip(weights, logits, targets):
            total = total + weight * self.loss(level_logits.float(), level_target)
        return total

    def _one_hot_targets(self, indices: torch.Tensor, sizes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """The one-hot targets of every level from a class-index map: each nearest level picked from the index map
        and one-hot encoded at its own size (nearest resampling commutes with one-hot encoding, so these are the
        values of :func:`level_targets` on the full-resolution one-hot map); soft levels pool that map."""
        if self.intermediate_targets == "soft" and len(sizes) > 2:
            return level_targets(one_hot_channels(indices, self.num_classes), sizes, "soft")
        return [one_hot_channels(_nearest(indices, tuple(size)), self.num_classes) for size in sizes]
