"""J-Net: any 2D segmentation backbone followed by the upscaling head."""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from .upscaling_head import UpscalingHead

__all__ = ["JNet"]


class JNet(nn.Module):
    """
    J-Net (Ostrowski et al., arXiv 2403.05340): a segmentation backbone on a low-resolution input, whose class
    logits an :class:`UpscalingHead` brings to ``2**levels`` times the input resolution.

    Any module mapping ``(B, in_channels, r, r)`` to ``(B, num_classes, r, r)`` logits is a backbone: the
    project's :class:`ELUNet`, or MONAI's ``UNet`` / ``BasicUNet`` with ``spatial_dims=2`` where their depth
    allows ``r``.

    Outputs:
        - training mode: a list of every level's logits, highest resolution first (the order of MONAI's
          ``DeepSupervisionLoss`` and ``DynUNet``): ``levels + 1`` maps from ``(B, C, r * 2**levels, ...)`` down to
          ``(B, C, r, r)``.
        - eval mode: one tensor, ``(B, C, *output_size)``: the head's highest level, resized bilinearly only
          when ``output_size`` differs from it (with ``levels=0``: the backbone logits upsampled bilinearly,
          the baseline's way of producing a full-resolution prediction). One tensor keeps TorchScript, ONNX
          and TensorRT export simple.

    Args:
        backbone: the segmentation network at input resolution.
        num_classes: number of logit channels of the backbone.
        levels: head levels (resolution doublings); 0 means no head.
        output_size: spatial size of the eval output; ``None`` keeps the head's output size.
        head_skip: J-Net's output-end skip connections in the head.
        head_init: ``"bilinear"`` or ``"default"``, see :class:`UpscalingHead`.
        upsample_in_training: with ``levels=0``, also return the bilinearly upsampled logits in training (the
            "bilinear" ablation, trained against the full-resolution ground truth).
        head_trainable: ``False`` freezes the head at its initialisation (``requires_grad=False``): with
            ``head_init="bilinear"``, levels of fixed bilinear upsampling - the multi-stage loss without the head's
            parameters (an ablation).
        input_size: the input resolution the network is built for. Kept in the state dict (``trained_input_size``),
            so weights trained for one input size are refused by a network configured for another - the parameter
            shapes alone do not differ between input sizes. Weights saved without it load as they are.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        levels: int,
        output_size: int | tuple[int, int] | None = None,
        head_skip: bool = False,
        head_init: str = "bilinear",
        upsample_in_training: bool = False,
        input_size: int | None = None,
        head_trainable: bool = True,
    ) -> None:
        super().__init__()
        if upsample_in_training and (levels != 0 or output_size is None):
            raise ValueError("upsample_in_training needs levels=0 and an output_size.")
        self.backbone = backbone
        self.head = UpscalingHead(num_classes, levels, skip=head_skip, init=head_init)
        self.head.requires_grad_(head_trainable)
        self.output_size: tuple[int, int] | None = (
            None if output_size is None else (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        )
        self.upsample_in_training = upsample_in_training
        if input_size is not None:
            self.register_buffer("trained_input_size", torch.tensor(int(input_size)))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "trained_input_size"
        if hasattr(self, "trained_input_size"):
            if key not in state_dict:  # weights saved before the input size was kept: nothing to compare
                state_dict[key] = self.trained_input_size.clone()
            elif int(state_dict[key]) != int(self.trained_input_size):
                saved, here = int(state_dict[key]), int(self.trained_input_size)
                error_msgs.append(
                    f"the weights were trained for {saved}x{saved} inputs, this network is configured for {here}x{here} "
                    f"(input_size); use the {saved}x{saved} bundle, or --input_size {saved}"
                )
        else:
            state_dict.pop(key, None)  # a network built without input_size accepts any
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _to_output_size(self, logits: torch.Tensor) -> torch.Tensor:
        size = self.output_size
        if size is None or (logits.shape[-2] == size[0] and logits.shape[-1] == size[1]):
            return logits
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:  # noqa: UP007 (TorchScript)
        logits = self.backbone(x)
        if self.training:
            if self.upsample_in_training:
                return [self._to_output_size(logits)]
            return self.head(logits)
        return self._to_output_size(self.head(logits, highest_only=True)[0])
