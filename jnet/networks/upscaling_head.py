"""The J-Net upscaling head: class-wise (transposed conv 2x2 + 3x3 conv) levels, computed as one folded conv per level."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["UpscalingHead", "UpscalingLevel", "FoldedLevel", "classwise_up"]

HEAD_INITS = ("bilinear", "default")


class UpscalingLevel(nn.Module):
    """
    One head level: a class-wise ConvTranspose2d(kernel 2, stride 2) on each input, then a class-wise 3x3 conv
    (zero "same" padding) over the concatenated results. Doubles the resolution; no norm, no activation.

    This module is the definition: :class:`UpscalingHead` computes the same function without running it
    level by level on the full image (see there).

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

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        ups = [classwise_up(self.up.weight, self.up.bias, x)]
        if self.skip_up is not None and skip is not None:
            ups.append(classwise_up(self.skip_up.weight, self.skip_up.bias, skip))
        stacked = torch.stack(ups, dim=2).flatten(1, 2)  # per-class interleaving, as groups=C expects
        return self.conv(stacked)


class UpscalingHead(nn.Module):
    """
    J-Net upscaling head (Ostrowski et al., "Embedded Deployment of Semantic Segmentation in Medicine through
    Low-Resolution Inputs", arXiv 2403.05340): ``levels`` doublings of the backbone's class logits, each a
    class-wise ConvTranspose2d(2, 2) and a class-wise 3x3 conv (:class:`UpscalingLevel`). It costs ``15 * C``
    parameters per level (180 for 3 classes and 4 levels); with ``skip`` the base logits also travel up their own
    transposed-conv chain and are concatenated (per class) into every level from the second on (``117 * C`` for
    4 levels).

    How it is computed: the head is affine and class-wise, and a level's 3x3 conv reaches one pixel of its own
    resolution, so ``k`` levels reach ``2**k - 1`` output pixels: less than one input pixel. Output pixel
    ``(2**k * i + a, 2**k * j + b)`` of level ``k`` is therefore an affine function of the 3x3 input neighbourhood
    of ``(i, j)``, the same for every interior ``(i, j)``, and one of 8 other functions on the border ring (where
    the layers' zero padding is seen). :meth:`folded` reads those 9 kernels (``4**k`` outputs per class each) off
    the plain layers run on a 3x3 probe; :meth:`forward` applies them at the INPUT resolution as one small matmul
    per region and rearranges the phases into the larger map (a pixel shuffle). This equals running the layers (to
    float rounding, tested), in training too (the kernels are differentiable functions of the parameters; without
    autograd they are cached until a parameter changes), and costs about as much as writing the output once - not
    grouped (transposed) convs on 1-3 channels at the output resolution, which PyTorch's CPU kernels run an order of
    magnitude slower than their size warrants. Inputs smaller than 3x3 run the plain layers.

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
        self.num_classes = num_classes
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
        self._folded_cache: list[torch.Tensor] = []
        self._folded_key: tuple = ()
        self.register_buffer("probe", _impulse_probe(num_classes), persistent=False)
        self.register_buffer("tap_source", _tap_sources(), persistent=False)

    def _first_level(self, levels: Optional[int]) -> int:  # noqa: UP007 (TorchScript)
        """The index of the first level used when only the last ``levels`` levels run (all when None)."""
        if levels is None:
            return 0
        if levels < 0 or levels > self.levels:
            raise ValueError(f"levels must be between 0 and {self.levels}, got {levels}.")
        if self.skip and levels != self.levels:
            raise ValueError("a head with skip connections runs all its levels (its skip chain starts at the base logits).")
        return self.levels - levels

    def reference_forward(self, logits: torch.Tensor, levels: Optional[int] = None) -> list[torch.Tensor]:  # noqa: UP007
        """The head as its plain layers compute it, level by level (the definition :meth:`forward` equals); ``levels``:
        only the last ``levels`` levels (a resolution-switchable network's larger inputs), all when None."""
        first = self._first_level(levels)
        outputs = [logits]
        skip = logits
        for k, level in enumerate(self.level_modules):  # (no `continue`: TorchScript unrolls ModuleList loops)
            if k >= first and self.skip and k >= 1:
                for j, up in enumerate(self.skip_chain):  # TorchScript cannot index a ModuleList by a variable
                    if j == k - 1:
                        skip = classwise_up(up.weight, up.bias, skip)  # base logits at this level's input size
                outputs.append(level(outputs[-1], skip))
            elif k >= first:
                outputs.append(level(outputs[-1], None))
        outputs.reverse()
        return outputs

    def folded(self, levels: Optional[int] = None) -> list[torch.Tensor]:  # noqa: UP007 (TorchScript)
        """Per level ``k`` (1 .. levels): the region kernels, ``(9 regions, C, 10, 4**k)``; ``levels``: of the chain
        of the last ``levels`` levels only.

        Region ``3 * row + col`` (row/col 0 = first, 1 = interior, 2 = last) maps the 3x3 neighbourhood of an input
        pixel (taps ``3 * (dy + 1) + (dx + 1)``) and a constant 1 (tap 9: the bias) to the ``4**k`` output phases
        ``a * 2**k + b`` of that pixel, per class.
        """
        responses = self.reference_forward(self.probe, levels)  # (10, C, 3 * 2**k, 3 * 2**k): 9 impulses, then zeros
        responses.reverse()
        classes = self.num_classes
        kernels: list[torch.Tensor] = []
        for k in range(1, len(responses)):
            cells = F.pixel_unshuffle(responses[k], 1 << k)  # (10, C * 4**k, 3, 3): per probe, per cell, every phase
            bias = cells[9]  # the response to the zero input
            linear = torch.cat([cells[:9] - bias, torch.zeros_like(cells[:1])])  # index 9: a tap outside the probe
            by_cell = linear.flatten(2).permute(2, 0, 1)  # (9 cells, 10 probes, C * 4**k)
            taps = by_cell[self.tap_source[0], self.tap_source[1]].view(9, 9, classes, -1).transpose(1, 2)
            bias_taps = bias.flatten(1).t().reshape(9, classes, 1, -1)
            kernels.append(torch.cat([taps, bias_taps], dim=2))
        return kernels

    def forward(self, logits: torch.Tensor, highest_only: bool = False, levels: Optional[int] = None) -> list[torch.Tensor]:  # noqa: UP007
        """Every level's logits, highest resolution first; with ``highest_only`` just ``[highest]`` (inference).
        ``levels``: run only the last ``levels`` levels (the ones a larger input needs; all when None)."""
        used = self.levels - self._first_level(levels)
        if used == 0 or logits.shape[2] < 3 or logits.shape[3] < 3:
            outputs = self.reference_forward(logits, levels)
            return outputs[:1] if highest_only else outputs
        patches = _patches(logits)
        kernels = self._kernels(levels)
        if highest_only:
            if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.is_grad_enabled():
                return [_apply_folded(patches, kernels[-1], 1 << used)]
            return [self._write_folded(patches, kernels[-1], 1 << used)]
        outputs = [logits]
        if torch.jit.is_scripting() or torch.jit.is_tracing():  # (TorchScript compiles only this branch)
            for k, kernel in enumerate(kernels):
                outputs.append(_apply_folded(patches, kernel, 2 << k))
        else:
            for k, kernel in enumerate(kernels):
                outputs.append(self._apply_trained(patches, kernel, 2 << k))
        outputs.reverse()
        return outputs

    def _kernels(self, levels: Optional[int] = None) -> list[torch.Tensor]:  # noqa: UP007 (TorchScript)
        """:meth:`folded`, reused across calls without autograd while the parameters (and ``levels``) are unchanged."""
        if torch.jit.is_scripting() or torch.is_grad_enabled():
            return self.folded(levels)
        return self._cached_folded(levels)

    @torch.jit.unused
    def _write_folded(self, patches: torch.Tensor, kernel: torch.Tensor, factor: int) -> torch.Tensor:
        """:func:`_apply_folded` for eager inference: the same values written straight into one output tensor."""
        return _write_folded(patches, kernel, factor)

    @torch.jit.unused
    def _apply_trained(self, patches: torch.Tensor, kernel: torch.Tensor, factor: int) -> torch.Tensor:
        """:func:`_apply_folded` for eager training: :class:`FoldedLevel` (written in place, hand-written backward), the
        kernel in the patches' dtype (under autocast the backbone's logits may be half precision, the kernels not)."""
        return FoldedLevel.apply(patches, kernel.to(patches.dtype), factor)

    @torch.jit.unused
    def _cached_folded(self, levels: Optional[int] = None) -> list[torch.Tensor]:  # noqa: UP007 (TorchScript)
        # any in-place update (optimizer step, load_state_dict) bumps a parameter's version; .to() changes its storage
        key = (levels,) + tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters())
        if key != self._folded_key:
            self._folded_cache, self._folded_key = self.folded(levels), key
        return self._folded_cache


def _patches(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W, 10)``: each pixel's zero-padded 3x3 neighbourhood (row-major) and a constant 1."""
    height, width = int(x.shape[2]), int(x.shape[3])  # int(): constants in an exported graph, not Shape ops
    padded = F.pad(x, (1, 1, 1, 1))
    taps = [padded[:, :, t // 3 : t // 3 + height, t % 3 : t % 3 + width] for t in range(9)]
    return torch.stack(taps + [torch.ones_like(x)], dim=-1)


def _spans(size: int) -> list[tuple[int, int]]:
    """The first row (column), the interior and the last: the three spans of the folded kernels' regions."""
    return [(0, 1), (1, size - 1), (size - 1, size)]


def _apply_folded(patches: torch.Tensor, kernel: torch.Tensor, factor: int) -> torch.Tensor:
    """One folded head level: per region, a class-wise matmul of the patches with the region's kernel
    ``(C, 10, factor**2)``; the phases then rearranged into the ``factor`` times larger map (a pixel shuffle
    whose innermost ``factor`` values stay contiguous). Out of place: the form autograd, TorchScript and the ONNX
    exporter take. Every shape is the batch (-1) and constants (``int()``), so an exported graph's Reshapes take
    initializer shapes (TensorRT's parsers want them)."""
    classes, height, width = int(patches.shape[1]), int(patches.shape[2]), int(patches.shape[3])
    spans = _spans(height), _spans(width)
    rows = []
    for r, (top, bottom) in enumerate(spans[0]):
        row = []
        for c, (left, right) in enumerate(spans[1]):
            window = patches[:, :, top:bottom, left:right].reshape(-1, classes, (bottom - top) * (right - left), 10)
            phases = torch.matmul(window, kernel[3 * r + c])
            row.append(phases.view(-1, classes, bottom - top, right - left, factor * factor))
        rows.append(torch.cat(row, dim=3))
    phases = torch.cat(rows, dim=2).view(-1, classes, height, width, factor, factor)
    return phases.permute(0, 1, 2, 4, 3, 5).reshape(-1, classes, height * factor, width * factor)


WRITE_CHUNK = 1 << 18  # elements: a region's phases above this are written one phase row at a time


def _write_folded(patches: torch.Tensor, kernel: torch.Tensor, factor: int) -> torch.Tensor:
    """:func:`_apply_folded` written straight into one ``(B, C, H * factor, W * factor)`` tensor: per region, the
    matmul's phases go to their places in the output, one phase row at a time where the region is large. No
    temporary of the output's size is made, so a large batch does not make the allocator fetch (and the kernel
    zero) tens of MB of fresh pages per call, which cost PyTorch's CPU inference 3x at batch 32. No autograd: the
    in-place writes would make the backward pass copy the whole output once per write."""
    batch, classes, height, width = patches.shape[0], patches.shape[1], patches.shape[2], patches.shape[3]
    out = torch.empty(batch, classes, height, factor, width, factor, dtype=patches.dtype, device=patches.device)
    for r, (top, bottom) in enumerate(_spans(height)):
        for c, (left, right) in enumerate(_spans(width)):
            rows, cols = bottom - top, right - left
            window = patches[:, :, top:bottom, left:right].reshape(batch, classes, rows * cols, 10)
            target = out[:, :, top:bottom, :, left:right]  # (B, C, rows, factor, cols, factor)
            phases = kernel[3 * r + c].view(classes, 10, factor, factor)
            if window.shape[2] * batch * classes * factor * factor <= WRITE_CHUNK:
                values = torch.matmul(window, phases.flatten(2)).view(batch, classes, rows, cols, factor, factor)
                target.copy_(values.transpose(3, 4))
                continue
            for a in range(factor):
                target[:, :, :, a] = torch.matmul(window, phases[:, :, a]).view(batch, classes, rows, cols, factor)
    return out.view(batch, classes, height * factor, width * factor)


class FoldedLevel(torch.autograd.Function):
    """One folded head level (:func:`_apply_folded`'s values) for eager training: the forward writes the phases straight
    into the output (:func:`_write_folded`), the backward reads the output's gradient region by region, one class-batched
    matmul for the kernel's gradient and one for the patches'. Autograd through :func:`_apply_folded` instead keeps
    the per-region phases, two concatenations and the pixel shuffle - four output-sized copies each way, which made
    the head (180 parameters) the costliest part of a 16x16 training step. ``tests/test_networks.py`` checks values and
    gradients against the plain layers and with ``torch.autograd.gradcheck``.

    Shapes: ``patches`` ``(B, C, H, W, 10)`` (:func:`_patches`), ``kernel`` ``(9, C, 10, factor**2)`` ->
    ``(B, C, H * factor, W * factor)``.
    """

    @staticmethod
    def forward(ctx, patches: torch.Tensor, kernel: torch.Tensor, factor: int) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(patches, kernel)
        ctx.factor = factor
        return _write_folded(patches, kernel, factor)

    @staticmethod
    @once_differentiable  # the backward is not itself differentiable: a second derivative raises, not a wrong value
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:  # noqa: D102
        patches, kernel = ctx.saved_tensors
        need_patches, need_kernel = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        factor, classes = ctx.factor, int(patches.shape[1])
        height, width = int(patches.shape[2]), int(patches.shape[3])
        by_phase = grad.reshape(patches.shape[0], classes, height, factor, width, factor)
        by_class = patches.transpose(0, 1)  # (C, B, H, W, 10)
        grad_patches = torch.empty_like(patches) if need_patches else None
        grad_kernel = torch.empty_like(kernel) if need_kernel else None
        for r, (top, bottom) in enumerate(_spans(height)):
            for c, (left, right) in enumerate(_spans(width)):
                # the region's output gradient by class: (C, B * rows * cols, factor**2), phases in kernel order
                region = by_phase[:, :, top:bottom, :, left:right].permute(1, 0, 2, 4, 3, 5).reshape(classes, -1, factor * factor)
                if grad_kernel is not None:
                    window = by_class[:, :, top:bottom, left:right].reshape(classes, -1, 10)
                    torch.matmul(window.transpose(1, 2), region, out=grad_kernel[3 * r + c])
                if grad_patches is not None:
                    taps = torch.matmul(region, kernel[3 * r + c].transpose(1, 2))  # (C, B * rows * cols, 10)
                    grad_patches[:, :, top:bottom, left:right] = taps.view(classes, -1, bottom - top, right - left, 10).transpose(0, 1)
        return grad_patches, grad_kernel, None


def classwise_up(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A class-wise ConvTranspose2d(kernel 2, stride 2) with ``weight`` ``(C, 1, 2, 2)`` and ``bias`` ``(C,)``: each
    pixel times its class's 2x2 kernel, plus bias - a broadcast, several times faster on CPU than PyTorch's grouped
    transposed-conv kernel."""
    batch, classes, height, width = x.shape
    tiles = x[:, :, :, None, :, None] * weight.view(1, classes, 1, 2, 1, 2)
    assert bias is not None  # the layers are built with bias=True; narrows the Optional for TorchScript
    return tiles.reshape(batch, classes, 2 * height, 2 * width) + bias.view(1, classes, 1, 1)


def _impulse_probe(num_classes: int) -> torch.Tensor:
    """(10, C, 3, 3): probe ``n < 9`` is a unit impulse at cell ``(n // 3, n % 3)`` in every class; probe 9 is zero."""
    probe = torch.zeros(10, num_classes, 3, 3)
    for n in range(9):
        probe[n, :, n // 3, n % 3] = 1.0
    return probe


def _tap_sources() -> torch.Tensor:
    """(2, 81) indices: for region ``r`` and tap ``t`` (offset ``(t // 3 - 1, t % 3 - 1)``), the probe cell of region
    ``r`` and the probe whose impulse sits at that tap (9 when the tap falls outside the 3x3 probe: zero weight)."""
    cells, probes = [], []
    for r in range(9):
        row, col = r // 3, r % 3
        for t in range(9):
            y, x = row + t // 3 - 1, col + t % 3 - 1
            cells.append(r)
            probes.append(3 * y + x if 0 <= y < 3 and 0 <= x < 3 else 9)
    return torch.tensor([cells, probes])
