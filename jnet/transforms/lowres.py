"""Make the network's low-resolution input from the full-resolution image, invertibly onto the output grid."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Resize
from monai.utils import TraceKeys

__all__ = ["LowResInputd", "LOWRES_MODES"]

LOWRES_MODES = ("area", "nearest", "nearest-exact", "bilinear")


class LowResInputd(MapTransform, InvertibleTransform):
    """
    Downsample the first two spatial axes of ``(C, H, W[, D])`` images to ``size x size`` (the network input),
    leaving any further axis (slices) as it is.

    ``mode="area"`` averages the covered pixels (an anti-aliased box filter, the default); ``"nearest"`` picks
    one pixel per output pixel, as the J-Net paper's code does.

    Inverting it (``Invertd`` on a prediction) does NOT resize: the J-Net output is already on the full
    resolution grid the image had before this transform, so the inverse only restores that grid's affine. A
    plain ``Resized`` here would make ``Invertd`` keep the low-resolution affine (voxel spacing times
    ``H / size``) on the 256x256 prediction, and every later inverse step would start from the wrong grid.

    Args:
        keys: image keys.
        size: output in-plane size ``r``.
        mode: ``"area"``, ``"nearest"``, ``"nearest-exact"`` or ``"bilinear"``.
    """

    def __init__(self, keys: KeysCollection, size: int, mode: str = "area", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if mode not in LOWRES_MODES:
            raise ValueError(f"mode must be one of {LOWRES_MODES}, got {mode!r}.")
        self.size = size
        self.mode = mode

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            spatial = tuple(image.shape[1:])
            grid_affine = image.affine.clone() if isinstance(image, MetaTensor) else None
            resize = Resize((self.size, self.size) + (-1,) * (len(spatial) - 2), mode=self.mode)
            with resize.trace_transform(False):
                low = resize(image)
            self.push_transform(low, orig_size=spatial, extra_info={"grid_affine": grid_affine})
            d[key] = low
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            op = self.pop_transform(d[key])
            grid_size = tuple(op[TraceKeys.ORIG_SIZE])
            out = d[key]
            if tuple(out.shape[1:]) != grid_size:  # a prediction not on the full-resolution grid: bring it there
                out = Resize(grid_size, mode="bilinear" if out.ndim == 3 else "trilinear")(out)
            grid_affine = op[TraceKeys.EXTRA_INFO]["grid_affine"]
            if isinstance(out, MetaTensor) and grid_affine is not None:
                out.affine = grid_affine
            d[key] = out
        return d
