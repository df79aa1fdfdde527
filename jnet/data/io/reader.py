"""A NIfTI reader that refuses voxel data it cannot segment safely, naming the file.

The header checks (:mod:`jnet.data.checks`) only read headers. A truncated or corrupt ``.nii.gz`` has a good
header and fails only when its voxels are decompressed, deep inside ``LoadImaged``; NaN or Inf voxels load
without any error and then turn the z-normalisation of the whole volume into NaN. This reader checks both
where the file name is known - for BraTS case folders that is the single modality file, not just the case.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from monai.data import NibabelReader

from jnet.errors import InputError

__all__ = ["CheckedNibabelReader", "check_finite", "check_voxel_data"]

# what reading the voxel data of a file with a readable header raises when the file is damaged: gzip stream cut
# short (EOFError), damaged deflate data (zlib.error), CRC mismatch (gzip.BadGzipFile, an OSError), short file (OSError)
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


def check_finite(array: np.ndarray, filename: str) -> None:
    """Raise :class:`InputError` naming ``filename`` when a floating-point ``array`` holds NaN or Inf."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    nan = int(np.isnan(array).sum())
    inf = int(array.size - finite.sum()) - nan
    raise InputError(
        f"{filename}: holds {nan} NaN and {inf} Inf voxel value(s) of {array.size}; they are not replaced "
        "automatically - fix or re-export the file."
    )


def _read_gzip_checked(img: nib.Nifti1Image, path: str) -> np.ndarray:
    """The voxels of a ``.nii.gz`` file, decompressed to the end of the gzip stream, where gzip checks the CRC-32
    and length of the data. nibabel alone stops reading after the last voxel byte and never reaches that check,
    so damaged deflate blocks that still decode give garbage voxels without any error."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.asanyarray(type(img).from_bytes(raw).dataobj)


def _source_name(img, fallback: str) -> str:
    """The file a nibabel image's voxel data come from (robust to a reader shared between threads)."""
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

    Args:
        args, kwargs: as ``monai.data.NibabelReader``.
    """

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


def check_voxel_data(paths: str | Sequence[str]) -> None:
    """Read every voxel of ``paths`` (one file, or the files stacked as channels) the way the bundles do,
    raising :class:`InputError` for unreadable or non-finite data."""
    reader = CheckedNibabelReader()
    reader.get_data(reader.read(paths))
