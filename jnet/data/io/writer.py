"""A NIfTI writer that writes a prediction on the grid it already has, for volumes stored in any orientation."""

from __future__ import annotations

import os

from monai.data import NibabelWriter
from monai.data.folder_layout import default_name_formatter

from jnet.processing import mask_stem

__all__ = ["NibabelWriterNoResample", "mask_name_formatter"]


def mask_name_formatter(metadict: dict, saver) -> dict:
    """``SaveImaged``'s ``output_name_formatter``: MONAI's own, but a DICOM series folder is named by
    :func:`jnet.processing.mask_stem` (its dots kept as underscores), as the standalone runner names it."""
    names = default_name_formatter(metadict, saver)
    if os.path.isdir(names["subject"]):
        names["subject"] = mask_stem(names["subject"])
    return names


class NibabelWriterNoResample(NibabelWriter):
    """
    MONAI's ``NibabelWriter`` for ``SaveImaged(resample=False)``: the array is written with the affine it carries,
    untouched. The bundles' ``InvertToLabelsd`` already brings each prediction back to its input's grid and affine.

    MONAI's own writer still passes such data through ``SpatialResample`` (as an identity), and for a channel-less
    3D array (``squeeze_end_dims``) it takes the spatial rank from the array as if its first axis were a channel:
    the identity resampling runs on the 2x2 top-left block of the affine, which is singular for a volume stored
    with its slice axis first or second (sagittal or coronal acquisitions, axes permuted against RAS) - the save
    fails with "Affine ... is not invertible". Resampling is unchanged when it is asked for.
    """

    @classmethod
    def resample_if_needed(cls, data_array, affine=None, target_affine=None, output_spatial_shape=None, **kwargs):
        if target_affine is None and output_spatial_shape is None:
            return data_array, affine
        return super().resample_if_needed(data_array, affine, target_affine, output_spatial_shape, **kwargs)
