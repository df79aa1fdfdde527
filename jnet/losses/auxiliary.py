"""Training-only auxiliary losses that cost nothing at inference: distillation from a full-resolution teacher and a
DSRL-style super-resolution branch. Both need the high-resolution image of each training slice next to its label
(:class:`TrainingTargets`, made by :class:`jnet.engines.PrepareBatchHighRes`)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.loss import _Loss

__all__ = ["TrainingTargets", "DistillationLoss", "SuperResolutionLoss"]


class TrainingTargets(NamedTuple):
    """What a training batch gives the loss: ``label`` (the usual target) and ``highres``, the ``(B, C, H, W)``
    image at the ground truth's resolution before ``LowResInputd`` downsampled it."""

    label: torch.Tensor
    highres: torch.Tensor


def _top_level(outputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The highest-resolution logits of a J-Net training output (a list, highest first) or of one tensor."""
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


class _AuxiliaryLoss(_Loss):
    """``loss(outputs, label) + weight * term``; a nested auxiliary loss gets the whole :class:`TrainingTargets`."""

    def __init__(self, loss: nn.Module, weight: float) -> None:
        super().__init__()
        self.loss = loss
        self.weight = float(weight)

    def base(self, outputs, targets: TrainingTargets) -> torch.Tensor:
        if not isinstance(targets, TrainingTargets):
            raise TypeError(
                f"{type(self).__name__} needs TrainingTargets (label, highres): set the trainer's prepare_batch to "
                "jnet.engines.PrepareBatchHighRes and a highres_key (configs/ablation/distillation.json shows how)."
            )
        return self.loss(outputs, targets if isinstance(self.loss, _AuxiliaryLoss) else targets.label)


class DistillationLoss(_AuxiliaryLoss):
    """
    Knowledge distillation (Hinton et al. 2015) from a full-resolution teacher to the low-resolution student:
    ``loss(outputs, label) + weight * T**2 * KL(teacher || student)`` on the softened class distributions at the
    student's highest level. The teacher (frozen, eval mode, e.g. the backbone trained on the 256x256 input - the
    sweep's ``reference``) sees the high-resolution image of the same augmented slice; the student only its
    downsampled input. Used in training only: the saved network is the student alone.

    Shapes: ``outputs`` the student's levels (highest first, ``(B, K, H, W)`` first) or one ``(B, K, H, W)``;
    ``targets.highres`` ``(B, C, H', W')``, the teacher's input; the teacher's logits are resized bilinearly to
    ``(H, W)`` when they differ.

    Args:
        loss: the supervised loss (the bundle's multi-stage loss).
        teacher: the frozen teacher network mapping ``targets.highres`` to ``(B, K, ...)`` logits.
        weight: the distillation term's weight.
        temperature: the softmax temperature ``T`` (the term is scaled by ``T**2`` so its gradients keep their size).
        sigmoid: per-channel sigmoid distributions (overlapping regions, one-channel tasks) instead of a softmax over
            the classes.
    """

    def __init__(self, loss: nn.Module, teacher: nn.Module, weight: float = 1.0, temperature: float = 2.0, sigmoid: bool = False) -> None:
        super().__init__(loss, weight)
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = float(temperature)
        self.sigmoid = sigmoid

    def train(self, mode: bool = True) -> DistillationLoss:  # the teacher stays in eval mode (BatchNorm statistics)
        super().train(mode)
        self.teacher.eval()
        return self

    def distillation(self, student: torch.Tensor, highres: torch.Tensor) -> torch.Tensor:
        """``T**2 * KL(teacher || student)`` per pixel, averaged."""
        with torch.no_grad():
            teacher = self.teacher(highres.float())
            if teacher.shape[-2:] != student.shape[-2:]:  # antialiased when shrinking
                shrink = teacher.shape[-1] > student.shape[-1]
                teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear", align_corners=False, antialias=shrink)
        t = self.temperature
        if self.sigmoid:
            p_teacher = torch.sigmoid(teacher / t)
            kl = F.binary_cross_entropy_with_logits(student / t, p_teacher) - F.binary_cross_entropy_with_logits(teacher / t, p_teacher)
        else:
            kl = (F.softmax(teacher / t, 1) * (F.log_softmax(teacher / t, 1) - F.log_softmax(student / t, 1))).sum(1).mean()
        return kl * t * t

    def forward(self, outputs, targets: TrainingTargets) -> torch.Tensor:
        supervised = self.base(outputs, targets)
        return supervised + self.weight * self.distillation(_top_level(outputs), targets.highres)


class SuperResolutionLoss(_AuxiliaryLoss):
    """
    A DSRL-style super-resolution auxiliary (Wang et al., "Dual Super-Resolution Learning for Semantic Segmentation",
    CVPR 2020): a small branch reconstructs the high-resolution image from the backbone's last decoder features, so
    the shared backbone learns the detail the segmentation must recover; ``loss(outputs, label) + weight *
    MSE(branch(features), highres)``. The branch lives in this loss, not in the network: the saved network and
    every inference path are unchanged. DSRL's feature-affinity term is not included.

    The features are caught by a forward hook on ``network.<feature_module>`` (its input; default the ELU-Net's
    final 1x1 convolution, whose input is the ``(B, features, r, r)`` decoder output) on every training forward.
    The branch: ``levels`` of (transposed convolution 2x2 stride 2, ELU), each doubling the resolution, then a 3x3
    convolution to the image channels (the layers are trained with the network: add ``loss.parameters()`` to the
    optimizer, as ``configs/ablation/super_resolution.json`` does).

    Args:
        loss: the supervised loss (the bundle's multi-stage loss).
        network: the segmentation network whose features the branch reads.
        in_features: channels of the hooked features (the backbone's ``features``).
        out_channels: image channels to reconstruct.
        levels: resolution doublings from the input size to the high-resolution image (``log2(256 / r)``).
        weight: the reconstruction term's weight (DSRL: 0.1).
        feature_module: the submodule of ``network`` whose input is the feature map.
    """

    def __init__(
        self,
        loss: nn.Module,
        network: nn.Module,
        in_features: int,
        out_channels: int,
        levels: int,
        weight: float = 0.1,
        feature_module: str = "backbone.out_conv",
    ) -> None:
        super().__init__(loss, weight)
        layers: list[nn.Module] = []
        for _ in range(levels):
            layers += [nn.ConvTranspose2d(in_features, in_features, 2, stride=2), nn.ELU()]
        layers.append(nn.Conv2d(in_features, out_channels, 3, padding=1))
        self.branch = nn.Sequential(*layers)
        self._features: torch.Tensor | None = None
        network.get_submodule(feature_module).register_forward_pre_hook(self._catch)

    def _catch(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._features = inputs[0] if module.training else None

    def forward(self, outputs, targets: TrainingTargets) -> torch.Tensor:
        supervised = self.base(outputs, targets)
        if self._features is None:
            raise RuntimeError("SuperResolutionLoss: no features caught - the network did not run in training mode.")
        reconstruction = self.branch(self._features)
        highres = targets.highres.float()
        if reconstruction.shape[-2:] != highres.shape[-2:]:
            reconstruction = F.interpolate(reconstruction, size=highres.shape[-2:], mode="bilinear", align_corners=False)
        self._features = None
        return supervised + self.weight * F.mse_loss(reconstruction, highres)
