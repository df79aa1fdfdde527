"""One J-Net for every input size: the backbone and the head shared, the head's last levels per size."""


import copy
import math
from collections.abc import Callable, Sequence
from typing import Optional, Union

import torch
from torch import nn

from .jnet import JNet
from .upscaling_head import UpscalingHead

__all__ = ["SwitchableJNet", "SizeSwitchedBatchNorm2d", "SizeStatisticsBatchNorm2d", "DEFAULT_SIZES", "size_norms"]

DEFAULT_SIZES = (16, 32, 64, 128)


class SizeSwitchedBatchNorm2d(nn.Module):
    """
    One ``BatchNorm2d`` per input size, the one of the size set by :meth:`select` normalising (Resolution
    Switchable Networks, Wang et al., ECCV 2020: BatchNorm statistics shift with input resolution). Its
    ``4 * num_features`` parameters and statistics per size beyond the first are the switch's only cost.

    Shapes: ``(B, num_features, H, W)`` -> the same.

    Args:
        num_features: channels.
        num_sizes: how many input sizes (one norm each).
        template: a ``BatchNorm2d`` whose settings (eps, momentum, affine) and state each norm starts from.
    """

    def __init__(self, num_features: int, num_sizes: int, template: Optional[nn.BatchNorm2d] = None) -> None:
        super().__init__()
        template = template if template is not None else nn.BatchNorm2d(num_features)
        self.norms = nn.ModuleList(copy.deepcopy(template) for _ in range(num_sizes))
        self.active = 0

    def select(self, index: int) -> None:
        if not 0 <= index < len(self.norms):
            raise ValueError(f"size index {index} out of range for {len(self.norms)} norms.")
        self.active = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for index, norm in enumerate(self.norms):  # not self.norms[self.active]: TorchScript indexes a ModuleList by constants only
            if index == self.active:
                out = norm(x)
        return out


class SizeStatisticsBatchNorm2d(nn.Module):
    """
    A ``BatchNorm2d`` with ONE affine transform and one set of running statistics per input size: the statistics
    shift with the input resolution (Resolution Switchable Networks, ECCV 2020), the learned scale and shift need
    not. The size is read from the feature map itself: the norm sits at a fixed depth, so each input size gives it
    its own side (``sides[i]`` for ``sizes[i]``, all different), and no switch state is set before a forward pass
    (TorchScript, DistributedDataParallel and the inferers need nothing more). Adds no parameters: ``2 *
    num_features`` statistics per size beyond the first.

    Shapes: ``(B, num_features, H, H)`` with ``H`` in ``sides`` -> the same.

    Args:
        template: the ``BatchNorm2d`` (``track_running_stats``, a float ``momentum``) whose affine transform is shared
            and whose statistics every size starts from.
        sides: the feature map's side at this norm for each input size, in the sizes' order.
    """

    def __init__(self, template: nn.BatchNorm2d, sides: Sequence[int]) -> None:
        super().__init__()
        if template.running_mean is None or template.momentum is None:
            raise ValueError("SizeStatisticsBatchNorm2d needs a BatchNorm2d with running statistics and a float momentum.")
        if len(set(sides)) != len(sides):
            raise ValueError(f"every input size must give this norm its own feature-map side, got {list(sides)}.")
        self.num_features, self.eps, self.momentum = template.num_features, float(template.eps), float(template.momentum)
        self.sides = [int(side) for side in sides]
        self.weight = nn.Parameter(template.weight.detach().clone()) if template.affine else None
        self.bias = nn.Parameter(template.bias.detach().clone()) if template.affine else None
        self.register_buffer("running_means", template.running_mean.detach().repeat(len(sides), 1))
        self.register_buffer("running_vars", template.running_var.detach().repeat(len(sides), 1))

    def size_index(self, side: int) -> int:
        for index, known in enumerate(self.sides):
            if known == side:
                return index
        raise ValueError("feature map of side " + str(side) + " at a size-statistics norm that knows the sides " + str(self.sides))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = self.size_index(int(x.shape[-1]))
        # the rows are views: batch_norm updates this size's running statistics in place while training
        return nn.functional.batch_norm(x, self.running_means[index], self.running_vars[index], self.weight, self.bias,
                                        self.training, self.momentum, self.eps)

    def at_index(self, index: int) -> nn.BatchNorm2d:
        """The plain ``BatchNorm2d`` this norm computes for size ``index`` (copies)."""
        norm = nn.BatchNorm2d(self.num_features, eps=self.eps, momentum=self.momentum, affine=self.weight is not None)
        with torch.no_grad():
            if self.weight is not None:
                norm.weight.copy_(self.weight)
                norm.bias.copy_(self.bias)
            norm.running_mean.copy_(self.running_means[index])
            norm.running_var.copy_(self.running_vars[index])
        return norm.to(self.running_means.device)


def size_norms(network: nn.Module) -> list[nn.Module]:
    """The norms of ``network`` whose running statistics belong to one input size: every
    :class:`SizeStatisticsBatchNorm2d` (``per_size_stats``) and each size's ``BatchNorm2d`` inside a
    :class:`SizeSwitchedBatchNorm2d` (``per_size_norm``); a forward pass at a size updates only that size's."""
    norms: list[nn.Module] = []
    for module in network.modules():
        if isinstance(module, SizeStatisticsBatchNorm2d):
            norms.append(module)
        elif isinstance(module, SizeSwitchedBatchNorm2d):
            norms.extend(module.norms)
    return norms


def _norm_sides(backbone: nn.Module, sizes: Sequence[int]) -> dict[nn.Module, list[int]]:
    """Each ``BatchNorm2d`` of ``backbone`` and the side of its input at every size (one eval-mode pass per size)."""
    norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    first_conv = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
    sides: dict[nn.Module, list[int]] = {norm: [] for norm in norms}
    hooks = [norm.register_forward_pre_hook(lambda module, inputs: sides[module].append(int(inputs[0].shape[-1]))) for norm in norms]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            for size in sizes:
                backbone(torch.zeros(1, first_conv.in_channels, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        backbone.train(was_training)
    return sides


def _replace_modules(module: nn.Module, replace: Callable[[nn.Module], Optional[nn.Module]]) -> None:
    """Swap every child of ``module``, at any depth, for ``replace(child)`` where that is not ``None``; descend into the
    others."""
    for name, child in module.named_children():
        swapped = replace(child)
        if swapped is not None:
            setattr(module, name, swapped)
        else:
            _replace_modules(child, replace)


def _switch_statistics(module: nn.Module, sides: dict[nn.Module, list[int]]) -> None:
    """Replace every ``BatchNorm2d`` inside ``module`` by a :class:`SizeStatisticsBatchNorm2d` starting from it."""
    _replace_modules(module, lambda m: SizeStatisticsBatchNorm2d(m, sides[m]) if isinstance(m, nn.BatchNorm2d) else None)


def _switch_norms(module: nn.Module, num_sizes: int) -> None:
    """Replace every ``BatchNorm2d`` inside ``module`` by a :class:`SizeSwitchedBatchNorm2d` starting from it."""
    _replace_modules(module, lambda m: SizeSwitchedBatchNorm2d(m.num_features, num_sizes, m) if isinstance(m, nn.BatchNorm2d) else None)


def _collapse_norms(module: nn.Module, index: int) -> None:
    """Replace every :class:`SizeSwitchedBatchNorm2d` / :class:`SizeStatisticsBatchNorm2d` inside ``module`` by its
    plain norm for size ``index``."""

    def plain(m: nn.Module) -> Optional[nn.Module]:
        if isinstance(m, SizeSwitchedBatchNorm2d):
            return m.norms[index]
        return m.at_index(index) if isinstance(m, SizeStatisticsBatchNorm2d) else None

    _replace_modules(module, plain)


class SwitchableJNet(JNet):
    """
    A resolution-switchable J-Net (issue 16; J-Net: Ostrowski et al., arXiv 2403.05340): one backbone and one
    ``levels``-level :class:`UpscalingHead` serve every input size ``r`` of ``sizes``, each size running the head's
    LAST ``log2(output_size / r)`` levels - the ones at ``2r -> 4r -> ... -> output_size`` - so a 128x128 input uses
    only the top level and a 16x16 input all four. The user picks speed or quality at run time from one set of
    weights; :meth:`at_size` gives the plain :class:`JNet` a fixed size computes (for export, and as the reference
    of the switch).

    With ``per_size_norm`` every ``BatchNorm2d`` of the backbone becomes a :class:`SizeSwitchedBatchNorm2d` (one norm
    per size, as Resolution Switchable Networks keep); :attr:`norm_parameters_per_size` counts what that adds. With
    ``per_size_stats`` each becomes a :class:`SizeStatisticsBatchNorm2d` instead: the affine transform shared, the
    running statistics per size (no parameters added; :attr:`norm_statistics_per_size` counts the statistics).

    Shapes: input ``(B, C_in, r, r)`` with ``r`` in ``sizes``; training mode: a list of the used levels' logits,
    highest resolution first (``log2(output_size / r) + 1`` maps, the last ``(B, K, r, r)``); eval mode: ``(B, K,
    output_size, output_size)`` logits. Another input size is a ``ValueError`` naming the supported ones.

    Args:
        backbone: the segmentation network at input resolution, valid at every size (ELU-Net with 4 pools).
        num_classes: logit channels of the backbone.
        output_size: the full-resolution output side (256).
        sizes: the supported input sides, each ``output_size / 2**k`` for ``k >= 1``.
        per_size_norm: one BatchNorm per size in the backbone.
        per_size_stats: one set of BatchNorm running statistics per size in the backbone, one affine transform.
        head_init: ``"bilinear"`` or ``"default"``, see :class:`UpscalingHead`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        output_size: int = 256,
        sizes: Sequence[int] = DEFAULT_SIZES,
        per_size_norm: bool = False,
        head_init: str = "bilinear",
        per_size_stats: bool = False,
    ) -> None:
        sizes = tuple(sorted(int(s) for s in sizes))
        if not sizes:
            raise ValueError("sizes must name at least one input size.")
        for size in sizes:
            ratio = output_size / size
            if size < 1 or ratio < 2 or ratio != 2 ** round(math.log2(ratio)):
                raise ValueError(f"every input size must be output_size ({output_size}) / 2**k with k >= 1, got {size}.")
        if per_size_norm and per_size_stats:
            raise ValueError("per_size_norm (a whole norm per size) and per_size_stats (statistics per size): pick one.")
        levels = int(round(math.log2(output_size / sizes[0])))
        super().__init__(backbone, num_classes, levels, output_size=output_size, head_init=head_init)
        self.sizes = sizes
        self.levels_for = {size: int(round(math.log2(output_size / size))) for size in sizes}
        self.supported_text = ", ".join(f"{s}x{s}" for s in sizes)
        self.per_size_norm = per_size_norm
        if per_size_norm:
            _switch_norms(self.backbone, len(sizes))
        self.per_size_stats = per_size_stats
        if per_size_stats:
            _switch_statistics(self.backbone, _norm_sides(self.backbone, sizes))
        self.register_buffer("supported_sizes", torch.tensor(sizes), persistent=True)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "supported_sizes"
        if key in state_dict and tuple(int(s) for s in state_dict[key].tolist()) != self.sizes:
            saved = ", ".join(str(int(s)) for s in state_dict[key].tolist())
            error_msgs.append(f"the weights were trained for the input sizes {saved}, this network serves {', '.join(map(str, self.sizes))} (sizes)")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    __jit_unused_properties__ = ["norm_parameters_per_size", "norm_statistics_per_size"]

    @property
    def norm_parameters_per_size(self) -> int:
        """Parameters the per-size norms add for each size beyond the first (0 without ``per_size_norm``)."""
        norms = [m for m in self.backbone.modules() if isinstance(m, SizeSwitchedBatchNorm2d)]
        return sum(sum(p.numel() for p in norm.norms[0].parameters()) for norm in norms)

    @property
    def norm_statistics_per_size(self) -> int:
        """Running statistics (not parameters) the per-size norms add for each size beyond the first."""
        norms = [m for m in self.backbone.modules() if isinstance(m, (SizeSwitchedBatchNorm2d, SizeStatisticsBatchNorm2d))]
        return sum(2 * norm.num_features if isinstance(norm, SizeStatisticsBatchNorm2d) else 2 * norm.norms[0].num_features for norm in norms)

    def check_size(self, height: int, width: int) -> int:
        """The input side, or a ``ValueError`` naming the supported ones."""
        if height != width or height not in self.levels_for:
            raise ValueError("input of " + str(height) + "x" + str(width) + ": this network serves " + self.supported_text + " inputs.")
        return height

    @torch.jit.unused
    def select(self, size: int) -> None:
        """Make the per-size norms (if any) those of ``size``."""
        index = self.sizes.index(size)
        for module in self.backbone.modules():
            if isinstance(module, SizeSwitchedBatchNorm2d):
                module.select(index)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:  # noqa: UP007
        size = self.check_size(int(x.shape[-2]), int(x.shape[-1]))
        if self.per_size_norm:  # TorchScript: a scripted per_size_norm network raises here (select is Python only)
            self.select(size)
        logits = self.backbone(x)
        levels = self.levels_for[size]
        if self.training:
            return self.head(logits, levels=levels)
        return self._to_output_size(self.head(logits, highest_only=True, levels=levels)[0])

    def at_size(self, size: int) -> JNet:
        """The plain :class:`JNet` that this network computes at ``size`` (copies of the shared parameters: the
        backbone with that size's norms, a head of the last ``log2(output_size / size)`` levels) - what the export
        writes for one operating point."""
        self.check_size(size, size)
        backbone = copy.deepcopy(self.backbone)
        if self.per_size_norm or self.per_size_stats:
            _collapse_norms(backbone, self.sizes.index(size))
        levels = self.levels_for[size]
        fixed = JNet(backbone, self.head.num_classes, levels, output_size=self.output_size, input_size=size)
        fixed.head = UpscalingHead(self.head.num_classes, levels, init="default")
        fixed.head.level_modules = copy.deepcopy(self.head.level_modules[self.head.levels - levels :])
        fixed.train(self.training)
        return fixed.to(next(self.parameters()).device)
