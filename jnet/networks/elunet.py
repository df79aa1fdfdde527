"""ELU-Net: a lightweight U-Net with deep skip connections (2D)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ELUNet", "DoubleConv", "elunet_for_input", "max_pools_for"]


def max_pools_for(input_size: int, min_size: int = 1) -> int:
    """Number of 2x max-pool stages an ``input_size`` x ``input_size`` input allows, down to ``min_size``."""
    pools = 0
    while input_size % 2 == 0 and input_size // 2 >= min_size:
        input_size //= 2
        pools += 1
    return pools


class DoubleConv(nn.Sequential):
    """(3x3 conv "same" -> BatchNorm -> ReLU) twice."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class _UpToScale(nn.Sequential):
    """``num_doublings`` transposed convs (kernel 2, stride 2) followed by a 3x3 conv to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, num_doublings: int) -> None:
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_channels, in_channels, 2, 2) for _ in range(num_doublings)]
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        super().__init__(*layers)


class ELUNet(nn.Module):
    """
    ELU-Net backbone, 2D: Deng et al., "ELU-Net: An Efficient and Lightweight U-Net for Medical Image
    Segmentation", IEEE Access 10:35932, 2022. The J-Net paper (arXiv 2403.05340) uses it as its backbone.

    The encoder is a U-Net encoder (DoubleConv, then ``num_pools`` stages of max-pool + DoubleConv, widths
    ``features[0] * 2**i``). Each decoder stage at scale ``i`` receives "deep skip connections": the
    upsampled output of the deeper decoder stage and the features of EVERY encoder scale from ``i`` down to
    the deepest non-bottleneck scale, each brought to scale ``i`` by transposed convs and a 3x3 conv. A 1x1
    conv gives the class logits at input resolution.

    Shapes: input ``(B, in_channels, H, W)`` with ``H`` and ``W`` divisible by ``2**num_pools``; output
    ``(B, out_channels, H, W)`` logits.

    Args:
        in_channels: number of input channels (image modalities).
        out_channels: number of output channels (classes, or sigmoid channels).
        features: width of the first stage ``n``; stage ``i`` has ``n * 2**i`` channels.
        num_pools: number of max-pool stages (4 in the paper). A 16x16 input allows at most 4.
    """

    def __init__(self, in_channels: int, out_channels: int, features: int = 16, num_pools: int = 4) -> None:
        super().__init__()
        if num_pools < 1:
            raise ValueError(f"num_pools must be >= 1, got {num_pools}.")
        self.num_pools = num_pools
        widths = [features * 2**i for i in range(num_pools + 1)]
        self.in_conv = DoubleConv(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1])) for i in range(num_pools)
        )
        # decoder stage for scale i (i = num_pools-1 ... 0), stored deepest first
        self.up_from_deeper = nn.ModuleList()
        self.deep_skips = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(num_pools)):
            self.up_from_deeper.append(_UpToScale(widths[i + 1], widths[i], 1))
            # encoder scales j = i .. num_pools-1 (the bottleneck reaches the decoder only through the deeper path)
            self.deep_skips.append(nn.ModuleList(_UpToScale(widths[j], widths[i], j - i) for j in range(i, num_pools)))
            self.dec.append(DoubleConv(widths[i] * (num_pools - i + 1), widths[i]))
        self.out_conv = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.num_pools
        if x.shape[-2] % factor != 0 or x.shape[-1] % factor != 0:
            raise ValueError(f"ELUNet with {self.num_pools} pools needs H and W divisible by {factor}, got {x.shape}.")
        encoded = [self.in_conv(x)]
        for down in self.down:
            encoded.append(down(encoded[-1]))
        decoded = encoded[-1]
        for stage, (up, skips, dec) in enumerate(zip(self.up_from_deeper, self.deep_skips, self.dec)):
            i = self.num_pools - 1 - stage
            parts = [up(decoded)] + [skip(encoded[i + k]) for k, skip in enumerate(skips)]
            decoded = dec(torch.cat(parts, dim=1))
        return self.out_conv(decoded)


def elunet_for_input(
    in_channels: int, out_channels: int, input_size: int, features: int = 16, max_pools: int = 4
) -> ELUNet:
    """An :class:`ELUNet` with as many pooling stages (up to ``max_pools``) as ``input_size`` allows."""
    return ELUNet(in_channels, out_channels, features, min(max_pools, max_pools_for(input_size)))

