"""BraTS label codes -> MONAI's overlapping tumour regions (TC, WT, ET), per dataset layout (training targets;
:class:`jnet.transforms.AsLabelsd` writes predicted regions back as codes)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from jnet.data.brats import labels_to_regions

__all__ = ["BratsRegionsd"]


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
