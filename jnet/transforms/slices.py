"""Volume -> 2D slices: random axial slice sampling for training."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

__all__ = ["RandSliceSamplerd"]


class RandSliceSamplerd(Randomizable, MapTransform):
    """
    Sample ``num_samples`` slices along the last axis of ``(C, H, W, D)`` volumes: a list of dicts holding
    ``(C, H, W)`` slices (MONAI's ``Compose`` and ``list_data_collate`` flatten the list, as with
    ``RandCropByPosNegLabeld``). A share ``foreground_ratio`` of the samples is drawn from slices whose label
    has foreground (when the volume has any); the rest uniformly from all slices.

    Args:
        keys: keys of the volumes to slice (same depth).
        label_key: the label deciding which slices hold foreground.
        num_samples: slices per volume.
        foreground_ratio: expected share of foreground slices among the samples.
    """

    def __init__(
        self, keys: KeysCollection, label_key: str = "label", num_samples: int = 4, foreground_ratio: float = 0.7
    ) -> None:
        MapTransform.__init__(self, keys)
        self.label_key = label_key
        self.num_samples = num_samples
        self.foreground_ratio = foreground_ratio
        self._indices: Sequence[int] = []

    def randomize(self, label: torch.Tensor) -> None:
        depth = label.shape[-1]
        reduce_dims = tuple(range(label.ndim - 1))
        foreground = np.flatnonzero(np.asarray(torch.as_tensor(label).amax(dim=reduce_dims) > 0))
        indices = []
        for _ in range(self.num_samples):
            if foreground.size and self.R.rand() < self.foreground_ratio:
                indices.append(int(self.R.choice(foreground)))
            else:
                indices.append(int(self.R.randint(depth)))
        self._indices = indices

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        d = dict(data)
        self.randomize(d[self.label_key])
        samples = []
        for index in self._indices:
            sample = dict(d)
            for key in self.key_iterator(d):
                sample[key] = d[key][..., index]
            samples.append(sample)
        return samples
