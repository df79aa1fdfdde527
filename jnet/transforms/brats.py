"""BraTS label codes <-> MONAI's overlapping tumour regions (TC, WT, ET), per dataset layout."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from jnet.data.brats import labels_to_regions, regions_to_labels

__all__ = ["BratsRegionsd", "RegionsToLabelsd"]


def _like(result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    if isinstance(source, MetaTensor):
        out = MetaTensor(result, meta=source.meta)
        out.applied_operations = source.applied_operations
        return out
    return result


class BratsRegionsd(MapTransform):
    """``(1, ...)`` label codes of ``layout`` (``"decathlon"`` or ``"brats2021"``) -> ``(3, ...)`` TC, WT, ET."""

    def __init__(self, keys: KeysCollection, layout: str, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.layout = layout

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _like(labels_to_regions(d[key], self.layout), d[key])
        return d


class RegionsToLabelsd(MapTransform):
    """``(3, ...)`` TC, WT, ET probabilities -> ``(1, ...)`` one label map in the layout's own codes."""

    def __init__(self, keys: KeysCollection, layout: str, threshold: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.layout = layout
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _like(regions_to_labels(d[key], self.layout, self.threshold), d[key])
        return d
