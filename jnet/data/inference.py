"""The volumes an inference run segments, each screened on its own (headers, channels, readable finite voxels)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from jnet.errors import InputError

from .brats import _layout, brats_case, brats_case_dirs
from .checks import check_image_header
from .reader import check_voxel_data
from .screening import ScreenedInputs, screen_inputs

__all__ = ["inference_inputs", "inference_datalist"]


def _matching_files(pattern_or_files: str | Sequence[str]) -> list[str]:
    files = sorted(glob.glob(pattern_or_files)) if isinstance(pattern_or_files, str) else [str(f) for f in pattern_or_files]
    if not files:
        raise InputError(f"no input images match '{pattern_or_files}'.")
    return files


def _image_item(path: str, in_channels: int | None) -> dict:
    check_image_header(path, in_channels)
    check_voxel_data(path)
    return {"image": path}


def _case_item(case_dir: str) -> dict:
    item = brats_case(case_dir, labelled=False)
    check_voxel_data(item["image"])
    return item


def inference_inputs(
    dataset_dir: str | None, layout: str = "decathlon", input_files: str | list | None = None, in_channels: int | None = None
) -> ScreenedInputs:
    """
    Volumes to segment, screened one by one: ``input_files`` (a glob or a list of NIfTI files) when given;
    otherwise ``<dataset_dir>/imagesTs/*.nii.gz`` (Decathlon) or every case folder of a BraTS 2018-2021 layout.
    An input whose file is missing, unreadable, truncated, of the wrong shape or channels, or holds NaN/Inf is
    logged and left out (``failures``); :meth:`ScreenedInputs.raise_if_failed` reports them after the run.
    """
    if input_files:
        return screen_inputs(_matching_files(input_files), lambda path: _image_item(path, in_channels))
    if layout == "decathlon":
        if not dataset_dir or not os.path.isdir(dataset_dir):
            raise InputError(f"dataset_dir '{dataset_dir}' does not exist or is not a folder (set --dataset_dir or --input_files).")
        files = _matching_files(os.path.join(dataset_dir, "imagesTs", "*.nii.gz"))
        return screen_inputs(files, lambda path: _image_item(path, in_channels))
    _layout(layout)
    return screen_inputs(brats_case_dirs(dataset_dir or ""), _case_item)


def inference_datalist(
    dataset_dir: str | None, layout: str = "decathlon", input_files: str | list | None = None, in_channels: int | None = None
) -> list[dict]:
    """:func:`inference_inputs` for callers that need every input: raises on the first skipped one."""
    screened = inference_inputs(dataset_dir, layout, input_files, in_channels)
    screened.raise_if_failed()
    return screened.items
