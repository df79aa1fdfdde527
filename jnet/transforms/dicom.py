"""Writing the mask of a DICOM series input as a DICOM SEG as well (``inference.json --dicom_seg True``)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from jnet.data.io.dicom_seg import write_dicom_seg
from jnet.processing import is_dicom_folder

__all__ = ["SaveDicomSegd"]


class SaveDicomSegd(MapTransform):
    """
    After ``SaveImaged``: where the case's (first) input is a DICOM series folder, also write its mask as a DICOM
    Segmentation referencing that series (:func:`jnet.data.io.dicom_seg.write_dicom_seg`); NIfTI inputs are left
    as they are (a SEG must reference DICOM instances).

    Args:
        keys: the label-map keys (``(1, H, W, D)`` codes on the input's grid, after ``InvertToLabelsd``).
        output_dir: where ``<series>_seg.dcm`` goes.
        label_names: ``{code: name}`` of the foreground codes.
        algorithm: the algorithm's name recorded in the SEG (the bundle's).
    """

    def __init__(self, keys: KeysCollection, output_dir: str, label_names: dict, algorithm: str = "jnet", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = output_dir
        self.label_names = dict(label_names)
        self.algorithm = algorithm

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            source = str(getattr(d[key], "meta", {}).get("filename_or_obj", ""))
            if source and os.path.isdir(source) and is_dicom_folder(source):
                mask = np.asarray(d[key].detach().cpu() if hasattr(d[key], "detach") else d[key])
                write_dicom_seg(mask[0].astype(np.uint8), source, self.label_names, self.output_dir, self.algorithm)
        return d
