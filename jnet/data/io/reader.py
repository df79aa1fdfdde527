"""A NIfTI reader that refuses voxel data it cannot segment safely, naming the file.

The header checks (:mod:`jnet.data.checks`) only read headers. A truncated or corrupt ``.nii.gz`` has a good
header and fails only when its voxels are decompressed, deep inside ``LoadImaged``; NaN or Inf voxels load
without any error and then turn the z-normalisation of the whole volume into NaN. This reader checks both
where the file name is known - for BraTS case folders that is the single modality file, not just the case.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib

import nibabel as nib
import numpy as np
from monai.data import NibabelReader
from monai.utils import MetaKeys, ensure_tuple

from jnet.errors import InputError
from jnet.processing import OBLIQUE_WARNING_DEGREES, SLAB_SLICES, RunnerError, obliquity_degrees, to_axis_aligned, join_sequences, read_dicom_series, read_voxels, sequence_files, unscaled_gzip

__all__ = ["CheckedNibabelReader", "check_finite"]

# what reading the voxel data of a file with a readable header raises when the file is damaged: gzip stream cut
# short (EOFError), damaged deflate data (zlib.error), CRC mismatch (gzip.BadGzipFile, an OSError), short file (OSError)
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)
logger = logging.getLogger(__name__)


def check_finite(array: np.ndarray, filename: str) -> None:
    """Raise :class:`InputError` naming ``filename`` when a floating-point ``array`` holds NaN or Inf."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    slabs = [array[:, :, i : i + SLAB_SLICES] for i in range(0, array.shape[2], SLAB_SLICES)] if array.ndim >= 3 else [array]
    if all(np.isfinite(slab).all() for slab in slabs):  # a slab at a time: no mask of the whole volume
        return
    finite = np.isfinite(array)
    nan = int(np.isnan(array).sum())
    inf = int(array.size - finite.sum()) - nan
    raise InputError(
        f"{filename}: holds {nan} NaN and {inf} Inf voxel value(s) of {array.size}; they are not replaced "
        "automatically - fix or re-export the file."
    )


def _read_gzip_checked(img: nib.Nifti1Image, path: str) -> np.ndarray:
    """The voxels of a ``.nii.gz`` file, decompressed to the end of the gzip stream, where gzip checks the CRC-32
    and length of the data. nibabel alone stops reading after the last voxel byte and never reaches that check,
    so damaged deflate blocks that still decode give garbage voxels without any error. Unscaled voxels are
    decompressed straight into their array (:func:`jnet.processing.read_voxels`: one copy of the volume in memory)."""
    if unscaled_gzip(img, path):
        return read_voxels(img, path, order="C")  # C order: MONAI's LoadImage would copy a Fortran-ordered volume
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.asanyarray(type(img).from_bytes(raw).dataobj)


def _source_name(img, fallback: str) -> str:
    """The file a nibabel image's voxel data come from (robust to a reader shared between threads); for a DICOM
    series read into memory, its folder."""
    if getattr(img, "jnet_source", None):
        return img.jnet_source
    source = getattr(getattr(img, "dataobj", None), "file_like", None)
    if isinstance(source, str):
        return source
    return str(img.get_filename() or fallback)


class CheckedNibabelReader(NibabelReader):
    """
    MONAI's ``NibabelReader`` that raises :class:`~jnet.errors.InputError` naming the file when its voxel data
    cannot be read (a truncated or corrupt file whose header is fine; ``.nii.gz`` files are decompressed to the
    end so that gzip's CRC check catches damaged data that still decodes) or hold NaN or Inf values. Used by the
    bundles' ``LoadImaged`` (``"reader": "jnet.data.CheckedNibabelReader"``), so training, evaluation,
    inference and MONAI Label all refuse such a file with the same message.

    A case of several files (one per sequence: prostate T2 then ADC, the BraTS modalities) is one volume on the
    FIRST file's grid: every other sequence is resampled onto it in world coordinates (trilinear,
    :func:`jnet.processing.join_sequences`; one log line per resampled sequence) and the channels are concatenated
    in file order; the metadata (affine, shape) are the first file's, so the mask is written on its grid. Files on
    the same grid are stacked as they are. Where MONAI's reader stops with "spatial_shape ... should be the same",
    this one joins the grids.

    With ``sequence_suffixes`` (the bundle's, e.g. ``["_t2", "_adc"]``), one file named ``<case><first suffix>.nii[.gz]``
    with its other sequence files beside it (``<case>_adc.nii.gz``) is read as that case of several files
    (:func:`jnet.processing.sequence_files`): where a caller can pass only one path - MONAI Label sends one image
    per request - the reference sequence stands for its case.

    With ``oblique="axis_aligned"`` a case whose (reference) grid is more than
    :data:`~jnet.processing.OBLIQUE_WARNING_DEGREES` off the scanner axes is resampled (trilinear, zero outside) onto
    the nearest axis-aligned grid covering it (:func:`jnet.processing.axis_aligned_grid`); the metadata are that
    grid's, so the mask is written there. ``"as_is"`` (default) keeps the oblique grid.

    Args:
        sequence_suffixes: the file-name suffix of each channel's sequence, reference first; None: no grouping.
        oblique: ``"as_is"`` or ``"axis_aligned"``.
        args, kwargs: as ``monai.data.NibabelReader``.
    """

    def __init__(self, *args, sequence_suffixes: list[str] | None = None, oblique: str = "as_is", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(sequence_suffixes, str):
            raise ValueError(f"sequence_suffixes must be a list of file-name suffixes (e.g. ['_t2', '_adc']), got {sequence_suffixes!r}.")
        self.sequence_suffixes = list(sequence_suffixes) if sequence_suffixes else None
        if oblique not in ("as_is", "axis_aligned"):
            raise ValueError(f"oblique must be 'as_is' or 'axis_aligned', got {oblique!r}.")
        self.oblique = oblique

    def verify_suffix(self, filename) -> bool:
        return all(os.path.isdir(str(f)) or super(CheckedNibabelReader, self).verify_suffix(f) for f in ensure_tuple(filename))

    def read(self, data, **kwargs):
        """nibabel images of the files; a DICOM series folder is read (:func:`jnet.processing.read_dicom_series`)
        into an in-memory NIfTI image on the series' grid."""
        names = [str(name) for name in ensure_tuple(data)]
        if len(names) == 1 and self.sequence_suffixes:
            try:
                grouped = sequence_files(names[0], self.sequence_suffixes)
            except RunnerError as e:
                raise InputError(str(e)) from e
            if grouped:
                logger.info(f"{names[0]}: read with its sequence file(s) {', '.join(os.path.basename(f) for f in grouped[1:])}")
                names = data = grouped
        if not any(os.path.isdir(name) for name in names):
            return super().read(data, **kwargs)
        images = []
        for name in names:
            if os.path.isdir(name):
                try:
                    voxels, affine = read_dicom_series(name)
                except RunnerError as e:
                    raise InputError(str(e)) from e
                image = nib.Nifti1Image(voxels, affine)
                image.jnet_source = name  # where its voxels came from, for every message about them
                images.append(image)
            else:
                images.append(super().read(name, **kwargs))
        self.filenames = names  # as MONAI's read does; get_data names each image from the image itself
        return images if len(images) > 1 else images[0]

    def get_data(self, img):
        data, meta = self._joined_data(img)
        affine = np.asarray(meta[MetaKeys.AFFINE], dtype=np.float64)
        if self.oblique == "as_is" or obliquity_degrees(affine) <= OBLIQUE_WARNING_DEGREES:
            return data, meta
        channel_last = np.asarray(data).ndim == 4
        volume, new_affine = to_axis_aligned(_channels_first(data), affine)
        logger.info(f"resampled onto the axis-aligned grid {'x'.join(str(n) for n in volume.shape[1:])} (oblique 'axis_aligned')")
        meta[MetaKeys.AFFINE] = meta[MetaKeys.ORIGINAL_AFFINE] = new_affine
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(volume.shape[1:4])
        return (np.moveaxis(volume, 0, -1) if channel_last else volume[0]), meta

    def _joined_data(self, img):
        images = ensure_tuple(img)
        if len(images) < 2:
            return super().get_data(img)
        if self.as_closest_canonical:
            raise ValueError("CheckedNibabelReader joins the sequences of a case on their own grids: as_closest_canonical is not supported.")
        fallback = [str(f) for f in ensure_tuple(self.filenames)]
        filenames = [_source_name(image, fallback[i] if i < len(fallback) else f"sequence {i}") for i, image in enumerate(images)]
        data, meta = super().get_data(images[0])
        volumes, affines = [_channels_first(data)], [np.asarray(meta[MetaKeys.AFFINE], dtype=np.float64)]
        for image, filename in zip(images[1:], filenames[1:]):
            volumes.append(_channels_first(self._get_array_data(image, filename)))
            affines.append(np.asarray(self._get_affine(image), dtype=np.float64))
        try:
            joined, notes = join_sequences(volumes, affines, filenames)
        except ValueError as e:
            raise InputError(str(e)) from e
        for note in notes:
            logger.info(note)
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = -1
        return np.moveaxis(joined, 0, -1), meta

    def _get_array_data(self, img, filename):
        name = _source_name(img, str(filename))
        try:
            if name.endswith(".nii.gz") and isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)) and not self.to_gpu:
                data = _read_gzip_checked(img, name)
            else:
                data = super()._get_array_data(img, filename)
        except _READ_ERRORS as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{name}: the voxel data cannot be read - the file is truncated or corrupt ({reason}).") from e
        check_finite(np.asarray(data), name)
        return data


def _channels_first(data: np.ndarray) -> np.ndarray:
    """``(H, W, D)`` -> ``(1, H, W, D)``; ``(H, W, D, C)`` -> ``(C, H, W, D)``."""
    data = np.asarray(data)
    return data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
