"""The J-Net upscaling head: class-wise (transposed conv 2x2 + 3x3 conv) levels, computed as sub-pixel convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UpscalingHead", "UpscalingLevel"]

HEAD_INITS = ("bilinear", "default")


def _subpixel_scatter() -> torch.Tensor:
    """
    Constant 0/1 matrix (36, 36) that maps the outer product of a 3x3 conv kernel and a 2x2 transposed-conv
    kernel, indexed ``(dy, dx, s, t)``, to the equivalent low-resolution kernel indexed ``(a, b, oy, ox)``:
    output phase ``(a, b)`` of the 2x upsampled map reads input pixel offset ``(oy, ox)`` in {-1, 0, 1}.
    """
    scatter = torch.zeros(3, 3, 2, 2, 2, 2, 3, 3)
    for a in range(2):
        for b in range(2):
            for dy in range(3):
                for dx in range(3):
                    row, col = a + dy - 1, b + dx - 1  # high-resolution offset of this tap from (2i, 2j)
                    scatter[dy, dx, row % 2, col % 2, a, b, row // 2 + 1, col // 2 + 1] = 1.0
    return scatter.reshape(36, 36)


class UpscalingLevel(nn.Module):
    """
    One head level: a class-wise ConvTranspose2d(kernel 2, stride 2) on each input, then a class-wise 3x3 conv
    (zero "same" padding) over the concatenated results. Doubles the resolution; no norm, no activation.

    The parameters live in the standard layers (``up``, ``skip_up``, ``conv``), so a state dict is that of the
    plain layers and :meth:`reference_forward` runs them as PyTorch defines them. :meth:`forward` computes
    the same function (to float rounding) as ONE class-wise conv at the LOW resolution with 4 outputs per class
    (the four output phases: the 2x2 transposed conv folded into the 3x3 kernel), then a pixel shuffle, plus a
    precomputable bias map. PyTorch's CPU kernels for grouped (transposed) convs with one channel per group at the
    high resolution are an order of magnitude slower than the layer's size warrants, and the folded form exports
    to three ONNX nodes per level.

    Shapes: ``x`` ``(B, C, H, W)`` (and ``skip`` of the same shape when ``with_skip``) -> ``(B, C, 2H, 2W)``.

    Args:
        num_classes: number of channels ``C``; every op is per channel (grouped with ``groups=C``).
        with_skip: also take a skip input, upsampled by its own transposed conv and concatenated
            (per class) before the 3x3 conv, as in J-Net's output-end skip connections.
    """

    def __init__(self, num_classes: int, with_skip: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_inputs = 2 if with_skip else 1
        self.up = nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, groups=num_classes)
        self.skip_up = nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, groups=num_classes) if with_skip else None
        self.conv = nn.Conv2d(num_classes * self.num_inputs, num_classes, 3, padding=1, groups=num_classes)
        self.register_buffer("scatter", _subpixel_scatter(), persistent=False)

    def reset_to_bilinear(self) -> None:
        """Initialise as 2x bilinear upsampling (``align_corners=False``; exact away from the border).

        Nearest-neighbour replication (transposed conv of ones) followed by the [1, 2, 1] / 4 smoothing kernel
        in both axes gives weights 3/4, 1/4 at every output pixel - bilinear interpolation. Skip inputs start at
        zero weight, so the level starts as exactly this interpolation.
        """
        smooth = torch.tensor([1.0, 2.0, 1.0]) / 4
        with torch.no_grad():
            for up in (self.up, self.skip_up):
                if up is not None:
                    up.weight.fill_(1.0)
                    up.bias.zero_()
            self.conv.weight.zero_()
            self.conv.weight[:, 0] = torch.outer(smooth, smooth)
            self.conv.bias.zero_()

    def reference_forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """The level as the plain PyTorch layers compute it (slow on CPU; the definition ``forward`` matches)."""
        ups = [self.up(x)] if self.skip_up is None else [self.up(x), self.skip_up(skip)]
        stacked = torch.stack(ups, dim=2).flatten(1, 2)  # per-class interleaving, as groups=C expects
        return self.conv(stacked)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        classes, height, width = self.num_classes, x.shape[2], x.shape[3]  # an int attribute: static for export
        row_mask, col_mask = _border_masks(height, width, x)
        kernel, bias = self._input_terms(self.up.weight, self.up.bias, 0, row_mask, col_mask)
        conv_bias = self.conv.bias
        assert conv_bias is not None
        bias = bias + conv_bias.view(classes, 1, 1)
        inputs = x
        if self.skip_up is not None and skip is not None:
            skip_kernel, skip_bias = self._input_terms(self.skip_up.weight, self.skip_up.bias, 1, row_mask, col_mask)
            kernel = torch.stack([kernel, skip_kernel], dim=2).flatten(1, 2)  # (C, 4 phases, inputs, 3, 3)
            inputs = torch.stack([x, skip], dim=2).flatten(1, 2)  # per-class interleaving, as groups=C expects
            bias = bias + skip_bias
        weight = kernel.reshape(classes * 4, self.num_inputs, 3, 3)
        phases = F.conv2d(inputs, weight, padding=1, groups=classes)  # (B, 4C, H, W): phase (a, b) of class c
        return F.pixel_shuffle(phases, 2) + bias

    def _input_terms(
        self,
        up_weight: torch.Tensor,
        up_bias: torch.Tensor | None,
        index: int,
        row_mask: torch.Tensor,
        col_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For one input: the equivalent low-resolution kernel (C, 4, 3, 3) and its bias map (C, 2H, 2W)."""
        classes = self.num_classes
        conv_w = self.conv.weight[:, index]  # (C, 3, 3)
        outer = conv_w[:, :, :, None, None] * up_weight[:, 0, None, None, :, :]  # (C, 3, 3, 2, 2)
        kernel = (outer.reshape(classes, 36) @ self.scatter).reshape(classes, 4, 3, 3)
        # the transposed conv's bias is constant on the upsampled grid; the zero-padded 3x3 conv sees it partially
        assert up_bias is not None  # built with bias=True; narrows the Optional for TorchScript
        bias = up_bias.view(classes, 1, 1) * torch.einsum("dh,cde,ew->chw", row_mask, conv_w, col_mask)
        return kernel, bias


def _border_masks(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 2H) and (3, 2W) masks: which 3x3 taps fall inside the upsampled grid at each row / column."""

    return _tap_mask(2 * height, like), _tap_mask(2 * width, like)


def _tap_mask(size: int, like: torch.Tensor) -> torch.Tensor:
    ones = torch.ones(size - 1, dtype=like.dtype, device=like.device)
    return torch.stack([F.pad(ones, (1, 0)), F.pad(ones, (0, 1), value=1.0), F.pad(ones, (0, 1))])


class UpscalingHead(nn.Module):
    """
    J-Net upscaling head (Ostrowski et al., "Embedded Deployment of Semantic Segmentation in Medicine through
    Low-Resolution Inputs", arXiv 2403.05340): ``levels`` doublings of the backbone's class logits, each a
    class-wise ConvTranspose2d(2, 2) and a class-wise 3x3 conv. It costs ``15 * C`` parameters per level
    (180 for 3 classes and 4 levels); with ``skip`` the base logits also travel up their own transposed-conv
    chain and are concatenated (per class) into every level from the second on (``117 * C`` for 4 levels).

    Shapes: ``(B, C, H, W)`` -> a list of ``levels + 1`` logit maps, highest resolution first:
    ``[(B, C, H * 2**levels, W * 2**levels), ..., (B, C, H, W)]`` (the last is the input itself).
    With ``levels=0`` the head is the identity (the list holds the input only).

    Args:
        num_classes: channels of the logit map ``C``.
        levels: number of resolution doublings.
        skip: add J-Net's output-end skip connections.
        init: ``"bilinear"`` starts every level as 2x bilinear upsampling, so training learns a correction to
            the cheap baseline; ``"default"`` keeps PyTorch's random initialisation (the paper's code).
    """

    def __init__(self, num_classes: int, levels: int, skip: bool = False, init: str = "bilinear") -> None:
        super().__init__()
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}.")
        if init not in HEAD_INITS:
            raise ValueError(f"init must be one of {HEAD_INITS}, got {init!r}.")
        self.levels = levels
        self.skip = skip and levels >= 2
        self.level_modules = nn.ModuleList(UpscalingLevel(num_classes, self.skip and k >= 1) for k in range(levels))
        # the skip chain: base logits brought to the input resolution of levels 1 .. levels-1
        self.skip_chain = nn.ModuleList(
            nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, groups=num_classes)
            for _ in range(levels - 1 if self.skip else 0)
        )
        if init == "bilinear":
            for level in self.level_modules:
                level.reset_to_bilinear()
            with torch.no_grad():
                for up in self.skip_chain:
                    up.weight.fill_(1.0)
                    up.bias.zero_()

    def forward(self, logits: torch.Tensor) -> list[torch.Tensor]:
        outputs = [logits]
        skip = logits
        for k, level in enumerate(self.level_modules):
            if self.skip and k >= 1:
                for j, up in enumerate(self.skip_chain):  # TorchScript cannot index a ModuleList by a variable
                    if j == k - 1:
                        skip = _classwise_up(up.weight, up.bias, skip)  # base logits at this level's input size
                outputs.append(level(outputs[-1], skip))
            else:
                outputs.append(level(outputs[-1], None))
        outputs.reverse()
        return outputs


def _classwise_up(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A class-wise ConvTranspose2d(2, 2) as a broadcast: each pixel times the class's 2x2 kernel, plus bias."""
    batch, classes, height, width = x.shape
    tiles = x[:, :, :, None, :, None] * weight.view(1, classes, 1, 2, 1, 2)
    assert bias is not None
    return tiles.reshape(batch, classes, 2 * height, 2 * width) + bias.view(1, classes, 1, 1)
