"""BraTS label codes -> MONAI's overlapping tumour regions (TC, WT, ET), per dataset layout (training targets;
:class:`jnet.transforms.AsLabelsd` writes predicted regions back as codes)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from jnet.data.layouts.brats import labels_to_regions

from .pipeline import like_source

__all__ = ["BratsRegionsd"]


class BratsRegionsd(MapTransform):
    """``(1, ...)`` label codes of ``layout`` (``"decathlon"`` or ``"brats2021"``) -> ``(3, ...)`` TC, WT, ET."""

    def __init__(self, keys: KeysCollection, layout: str, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.layout = layout

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = like_source(labels_to_regions(d[key], self.layout), d[key])
        return d
