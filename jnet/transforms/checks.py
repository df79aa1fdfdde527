"""Transforms that check loaded data and fail with an :class:`~jnet.errors.InputError` naming the file."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from jnet.errors import InputError
from jnet.processing import uniform_mask_warning

__all__ = ["CheckChannelsd", "CheckLabelValuesd", "WarnUniformLabelsd", "source_file"]


def source_file(array: torch.Tensor) -> str:
    """The file a loaded MetaTensor came from (``<unknown file>`` for plain arrays)."""
    meta = getattr(array, "meta", {}) or {}
    return str(meta.get("filename_or_obj", "<unknown file>"))


class CheckChannelsd(MapTransform):
    """Check that channel-first images have ``num_channels`` channels."""

    def __init__(self, keys: KeysCollection, num_channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_channels = num_channels

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].shape[0] != self.num_channels:
                raise InputError(
                    f"{source_file(d[key])}: image has {d[key].shape[0]} channel(s), the bundle expects {self.num_channels}."
                )
        return d


class CheckLabelValuesd(MapTransform):
    """Check that label volumes hold only the declared class codes."""

    def __init__(self, keys: KeysCollection, allowed: Sequence[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.allowed = sorted(int(v) for v in allowed)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            values = torch.unique(torch.as_tensor(d[key]))
            unexpected = sorted({float(v) for v in values} - {float(v) for v in self.allowed})
            if unexpected:
                shown = ", ".join(f"{v:g}" for v in unexpected[:5])
                raise InputError(
                    f"{source_file(d[key])}: label holds value(s) {shown} outside the declared classes {self.allowed}."
                )
        return d


class WarnUniformLabelsd(MapTransform):
    """Log a warning naming the input when a predicted label map is one label everywhere (all background, or
    every voxel ET, air included): what untrained weights or an input unlike the training data give. The same
    warning as the standalone runner's (:func:`jnet.processing.uniform_mask_warning`); the data pass unchanged."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.logger = logging.getLogger("jnet.inference")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            warning = uniform_mask_warning(source_file(d[key]), np.asarray(torch.as_tensor(d[key]).cpu()))
            if warning:
                self.logger.warning(warning)
        return d
