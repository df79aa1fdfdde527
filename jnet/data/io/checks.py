"""Checks of input volumes from their NIfTI headers (cheap: no voxel data is read)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from jnet.errors import InputError
from jnet.processing import RunnerError, dicom_series_header, is_dicom_folder
from jnet.processing import SAME_GRID_TOLERANCE, grid_offset_mm, oblique_warning, overlap_fraction, spacing

__all__ = ["check_image_header", "check_case_headers", "check_pair_headers", "image_channels", "case_files", "warn_if_oblique"]

logger = logging.getLogger(__name__)


def case_files(image: str | Sequence[str]) -> list[str]:
    """The files of a case: one file, or the list of its sequence files."""
    return [image] if isinstance(image, str) else [str(f) for f in image]


class _SeriesHeader:
    """The shape and affine of a DICOM series folder, as a nibabel header gives them for a file."""

    def __init__(self, folder: str) -> None:
        try:
            self.shape, self.affine = dicom_series_header(folder)
        except RunnerError as e:
            raise InputError(str(e)) from e


def _header(path: str, listed_in: str | None = None) -> nib.Nifti1Image | _SeriesHeader:
    where = f" (listed in {listed_in})" if listed_in else ""
    if os.path.isdir(path):
        if is_dicom_folder(path):
            return _SeriesHeader(path)
        raise InputError(f"{path}: is a folder with no DICOM files, not a NIfTI file or a DICOM series{where}.")
    if not os.path.isfile(path):
        raise InputError(f"{path}: file does not exist{where}.")
    try:
        return nib.load(path)
    except Exception as e:  # nibabel raises several types for a file that is not NIfTI
        raise InputError(f"{path}: not a readable NIfTI file ({e}){where}.") from e


def _header_shape(path: str, listed_in: str | None = None) -> tuple[int, ...]:
    return tuple(int(n) for n in _header(path, listed_in).shape)


def warn_if_oblique(path: str, affine: np.ndarray, oblique: str = "as_is") -> None:
    """Log :func:`jnet.processing.oblique_warning` (for the choice ``oblique``) when the grid of ``path`` is oblique."""
    warning = oblique_warning(path, affine, oblique)
    if warning:
        logger.warning(warning)


def image_channels(shape: tuple[int, ...]) -> int:
    """Channels of an image stored as ``H x W x D`` (1) or ``H x W x D x C`` (C)."""
    return 1 if len(shape) == 3 else shape[3]


def _check_shape(path: str, shape: tuple[int, ...], in_channels: int | None) -> None:
    """:class:`InputError` unless ``shape`` is ``H x W x D`` or ``H x W x D x C`` with ``in_channels`` channels."""
    if len(shape) not in (3, 4):
        raise InputError(f"{path}: image has {len(shape)} dimensions {shape}; expected H x W x D or H x W x D x C.")
    if in_channels is not None and image_channels(shape) != in_channels:
        layout = "a 3D volume" if len(shape) == 3 else f"{shape[3]} channels"
        expected = "a 3D H x W x D NIfTI" if in_channels == 1 else f"a 4D H x W x D x {in_channels} NIfTI"
        raise InputError(
            f"{path}: image has {layout} (shape {shape}) but the bundle expects {in_channels} channel(s) ({expected})."
        )


def check_image_header(path: str, in_channels: int | None = None, listed_in: str | None = None) -> tuple[int, ...]:
    """The image's shape; raises :class:`InputError` when it is missing, unreadable, or has the wrong channels."""
    shape = _header_shape(path, listed_in)
    _check_shape(path, shape, in_channels)
    return shape


def _case_headers(image: str | Sequence[str], in_channels: int | None, listed_in: str | None, oblique: str = "as_is"):
    """:func:`check_case_headers`, also returning the first file's header (each header read once)."""
    files = case_files(image)
    if not files:
        raise InputError(f"an empty list of image files{f' (listed in {listed_in})' if listed_in else ''}.")
    headers = [_header(f, listed_in) for f in files]
    shapes = [tuple(int(n) for n in h.shape) for h in headers]
    if len(files) == 1:
        _check_shape(files[0], shapes[0], in_channels)
        channels = image_channels(shapes[0])
    else:
        one_per_file = in_channels == len(files)  # one sequence per channel (BraTS modalities, T2 + ADC): name the file
        for path, shape in zip(files, shapes):
            _check_shape(path, shape, 1 if one_per_file else None)
        channels = sum(image_channels(shape) for shape in shapes)
        if in_channels is not None and channels != in_channels:
            listing = ", ".join(f"{os.path.basename(p)} {image_channels(s)}" for p, s in zip(files, shapes))
            raise InputError(f"{files[0]}: the case's {len(files)} files hold {channels} channel(s) ({listing}) but the bundle expects {in_channels}.")
        for path, header, shape in zip(files[1:], headers[1:], shapes[1:]):
            if overlap_fraction(headers[0].affine, shapes[0][:3], header.affine, shape[:3]) == 0.0:
                raise InputError(
                    f"{path}: its grid does not overlap the grid of {files[0]} in world coordinates (another patient "
                    "position, or a wrong affine) - the sequences of a case cannot be brought onto one grid."
                )
    warn_if_oblique(files[0], headers[0].affine, oblique)
    return (*shapes[0][:3], channels), headers[0]


def check_case_headers(
    image: str | Sequence[str], in_channels: int | None = None, listed_in: str | None = None, oblique: str = "as_is"
) -> tuple[int, ...]:
    """
    The checks of :func:`check_image_header` for a case of one file or several sequence files: each file a
    readable 3D/4D NIfTI (or DICOM series), the channels of all files together ``in_channels``, every other
    sequence's grid overlapping the first's (they are resampled onto it when loaded). Warns once for an oblique
    first grid (its text says what ``oblique`` does with it). Returns the first file's shape with the case's channel
    count, ``(H, W, D, C)``.
    """
    return _case_headers(image, in_channels, listed_in, oblique)[0]


def check_pair_headers(image: str | Sequence[str], label: str, in_channels: int | None = None, listed_in: str | None = None) -> None:
    """Case checks (:func:`check_case_headers`), plus: the label is a 3D volume on the grid of the (first) image
    file - its shape, and its affine within :data:`~jnet.processing.SAME_GRID_TOLERANCE` of a voxel."""
    image_shape, image_header = _case_headers(image, in_channels, listed_in)
    reference = case_files(image)[0]
    label_header = _header(label, listed_in)
    label_shape = tuple(int(n) for n in label_header.shape)
    if len(label_shape) == 4 and label_shape[3] == 1:
        label_shape = label_shape[:3]
    if len(label_shape) != 3:
        raise InputError(f"{label}: label has shape {label_shape}; expected a 3D H x W x D volume of class codes.")
    if label_shape != image_shape[:3]:
        raise InputError(f"{label}: label shape {label_shape} differs from its image's {image_shape[:3]} ({reference}).")
    image_affine = image_header.affine
    offset = grid_offset_mm(image_affine, label_header.affine, label_shape)
    tolerance = SAME_GRID_TOLERANCE * spacing(image_affine).min()
    if offset > tolerance:
        raise InputError(
            f"{label}: the label's affine differs from its image's ({reference}): the grids are up to {offset:.2f} mm "
            f"apart (tolerance {tolerance:.2f} mm, a tenth of the smallest voxel) - the label would train on the wrong "
            "voxels; re-export it on the image's grid."
        )
