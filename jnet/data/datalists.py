"""The datalists every bundle config calls: the labelled volumes of a split (training, evaluation) and the volumes an
inference run segments, each screened on its own (headers, channels, grids) before the run and its voxels when it
is segmented, for either layout."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence

from jnet.errors import InputError
from jnet.processing import OBLIQUE_CHOICES, RunnerError, group_sequences, mask_name_clash, mask_stem

from .io.checks import case_files, check_case_headers
from .io.screening import ScreenedInputs, screen_inputs
from .layouts.brats import brats_case, brats_case_datalist, brats_case_dirs, brats_layout
from .layouts.decathlon import decathlon_datalist, select_split

__all__ = ["labelled_datalist", "inference_inputs", "inference_datalist"]

logger = logging.getLogger(__name__)


NIFTI_PATTERNS = ("*.nii.gz", "*.nii")


def _matching_files(pattern_or_files: str | Sequence[str | Sequence[str]]) -> list[str | list[str]]:
    """The cases of ``--input_files``: a glob (one file per case), or a list whose entries are files or lists of a
    case's sequence files (``[['t2.nii.gz', 'adc.nii.gz'], ...]``)."""
    if isinstance(pattern_or_files, str):
        files = sorted(glob.glob(pattern_or_files))
    else:
        files = [os.path.normpath(str(f)) if isinstance(f, (str, os.PathLike)) else [os.path.normpath(p) for p in case_files(f)]
                 for f in pattern_or_files]
    if not files:
        raise InputError(f"no input images match '{pattern_or_files}'.")
    return files


def _test_images(dataset_dir: str) -> list[str]:
    """``imagesTs/*.nii.gz`` and ``imagesTs/*.nii`` of a Decathlon task, sorted."""
    patterns = [os.path.join(dataset_dir, "imagesTs", p) for p in NIFTI_PATTERNS]
    files = sorted(f for p in patterns for f in glob.glob(p))
    if not files:
        raise InputError(f"no input images match {' or '.join(patterns)}.")
    return files


def _image_item(image: str | list[str], in_channels: int | None, oblique: str = "as_is") -> dict:
    """A case after its header checks; its voxels are read (and checked) once, when it is segmented
    (:class:`~jnet.data.io.screening.SkipFailedCases` skips it then if they are bad)."""
    check_case_headers(image, in_channels, oblique=oblique)
    return {"image": image}


def _case_item(case_dir: str) -> dict:
    return brats_case(case_dir, labelled=False)


def labelled_datalist(
    dataset_dir: str,
    layout: str = "decathlon",
    split: str = "train",
    num_folds: int = 5,
    val_fold: int = 0,
    seed: int = 0,
    in_channels: int | None = None,
) -> list[dict]:
    """The labelled volumes of one split, from a Decathlon task (``layout="decathlon"``, prostate or BraTS
    Task01) or from BraTS 2018-2021 case folders (``layout="brats2021"``)."""
    if layout == "decathlon":
        return decathlon_datalist(dataset_dir, split, num_folds, val_fold, seed, in_channels)
    brats_layout(layout)
    return select_split(brats_case_datalist(dataset_dir), split, num_folds, val_fold, seed)


def inference_inputs(
    dataset_dir: str | None,
    layout: str = "decathlon",
    input_files: str | list | None = None,
    in_channels: int | None = None,
    sequence_suffixes: Sequence[str] | None = None,
    oblique: str = "as_is",
) -> ScreenedInputs:
    """
    Volumes to segment, screened one by one: ``input_files`` (a glob or a list of NIfTI files, or of lists of a
    case's sequence files on their own grids) when given; otherwise ``<dataset_dir>/imagesTs/*.nii.gz`` and
    ``*.nii`` (Decathlon) or every case folder of a BraTS 2018-2021 layout.
    An input whose file is missing, unreadable as NIfTI, of the wrong shape or channels, or on grids that cannot be
    joined is logged and left out here; one whose voxels are truncated, corrupt or NaN/Inf when it is segmented is
    skipped then (:class:`~jnet.data.io.screening.SkipFailedCases`). Either way it is
    logged and left out (``failures``); :meth:`ScreenedInputs.raise_if_failed` reports them after the run.
    With ``sequence_suffixes`` (the bundle's, e.g. ``["_t2", "_adc"]``) separate sequence files named
    ``<case><suffix>.nii[.gz]`` are joined into one case (:func:`jnet.processing.group_sequences`). ``oblique``:
    what the reader does with an oblique grid (:data:`jnet.processing.OBLIQUE_CHOICES`), said in its warning.
    """
    if oblique not in OBLIQUE_CHOICES:
        raise InputError(f"oblique must be one of {', '.join(OBLIQUE_CHOICES)}, got {oblique!r}.")
    if input_files:
        return _screen_files(_matching_files(input_files), in_channels, sequence_suffixes, oblique)
    if layout == "decathlon":
        if not dataset_dir or not os.path.isdir(dataset_dir):
            raise InputError(f"dataset_dir '{dataset_dir}' does not exist or is not a folder (set --dataset_dir or --input_files).")
        return _screen_files(_test_images(dataset_dir), in_channels, sequence_suffixes, oblique)
    brats_layout(layout)
    return screen_inputs(brats_case_dirs(dataset_dir or ""), _case_item)


def _screen_files(files: list, in_channels: int | None, sequence_suffixes: Sequence[str] | None, oblique: str) -> ScreenedInputs:
    """Each case of ``files`` screened on its own, its sequence files joined first; an incomplete case is a failure."""
    try:
        cases, problems = group_sequences(files, sequence_suffixes)
    except RunnerError as error:
        raise InputError(str(error)) from error
    screened = screen_inputs(cases, lambda path: _image_item(path, in_channels, oblique))
    for _, message in problems:
        logger.warning(f"skipped {message}")
        screened.failures.append(message)
    return _one_mask_per_name(screened)


def _one_mask_per_name(screened: ScreenedInputs) -> ScreenedInputs:
    """Leave out (as failures) the cases whose mask would be written over an earlier case's: the same file or series
    folder name in two folders (``p1/T2``, ``p2/T2``) - masks go to one output folder, named after the first file."""
    kept, first = [], {}
    for item in screened.items:
        path = case_files(item["image"])[0]
        stem = mask_stem(path)
        if stem in first:
            message = mask_name_clash(path, first[stem])
            screened.failures.append(message)
            logger.warning(f"skipped {message}")
            continue
        first[stem] = path
        kept.append(item)
    screened.items[:] = kept
    return screened


def inference_datalist(
    dataset_dir: str | None, layout: str = "decathlon", input_files: str | list | None = None, in_channels: int | None = None
) -> list[dict]:
    """:func:`inference_inputs` for callers that need every input: raises on the first skipped one."""
    screened = inference_inputs(dataset_dir, layout, input_files, in_channels)
    screened.raise_if_failed()
    return screened.items
