"""
A DICOM series folder as a volume: the slices of one series sorted along their normal, the voxels rescaled
(``RescaleSlope``/``RescaleIntercept``), and the NIfTI-convention affine (RAS world, the array's first axis along
the image columns, as dcm2niix writes it) from ``ImagePositionPatient``, ``ImageOrientationPatient`` and
``PixelSpacing`` - DICOM's LPS patient coordinates with x and y negated. The mask of such a series is written as
NIfTI on exactly that grid.

Python 3.6 syntax; numpy, and ``pydicom`` imported only when a series is read (the ``[dicom]`` extra).
"""

import os

import numpy as np

from .params import RunnerError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# slices whose spacing differs from the first step by more than this share (or 0.02 mm, ImagePositionPatient's
# usual rounding, whichever is larger) are a gap or a second stack
SLICE_SPACING_TOLERANCE = 0.01
SLICE_SPACING_TOLERANCE_MM = 0.02


def _pydicom(folder):
    try:
        import pydicom
    except ImportError:
        raise RunnerError("{}: a DICOM series folder needs pydicom (pip install 'jnet-lowres[dicom]', or pip install pydicom).".format(folder))
    return pydicom


def mask_stem(path):
    """The name a case's mask is written under (``<stem>_seg.nii.gz``): a NIfTI file's name without ``.nii.gz`` /
    ``.nii``; a DICOM series folder's name with its dots made underscores (a series folder named by its UID,
    ``1.3.12.2...25.1``, would otherwise lose its last part as if it were a file extension)."""
    name = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        return name.replace(".", "_")
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def mask_name_clash(path, earlier):
    """The message for a case whose mask would be written over the mask of the case ``earlier`` (the same name)."""
    return "{}: its mask would be written as {}_seg.nii.gz over the mask of {}; rename one, or run them with different --output_dir.".format(
        path, mask_stem(path), earlier)


def is_dicom_folder(path):
    """Whether ``path`` is a folder holding at least one DICOM file (the ``DICM`` marker at byte 128) and no NIfTI."""
    if not os.path.isdir(path):
        return False
    names = sorted(os.listdir(path))
    if any(name.endswith((".nii", ".nii.gz")) for name in names):
        return False
    for name in names:
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                if f.read(132)[128:132] == b"DICM":
                    return True
    return False


def _slices(folder, headers_only):
    """The datasets of the folder's one image series (every readable DICOM file with pixel geometry)."""
    pydicom = _pydicom(folder)
    datasets = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=headers_only)
        except Exception:  # not DICOM (a README, DICOMDIR's siblings): not a slice
            continue
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and "PixelSpacing" in ds:
            datasets.append(ds)
    if not datasets:
        raise RunnerError("{}: no DICOM image slices (with ImagePositionPatient, ImageOrientationPatient, PixelSpacing) in this folder.".format(folder))
    series = sorted(set(str(getattr(ds, "SeriesInstanceUID", "")) for ds in datasets))
    if len(series) > 1:
        raise RunnerError("{}: holds {} DICOM series ({}); give one series folder per sequence.".format(folder, len(series), ", ".join(series)))
    return datasets


def _geometry(folder, datasets):
    """Sort the slices along their normal; return them and the (4, 4) RAS affine."""
    orientation = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    row_direction, column_direction = orientation[:3], orientation[3:]  # along a row (columns increase), along a column
    normal = np.cross(row_direction, column_direction)
    for ds in datasets[1:]:
        if np.abs(np.array([float(v) for v in ds.ImageOrientationPatient]) - orientation).max() > 1e-4:
            raise RunnerError("{}: the slices have different ImageOrientationPatient; not one stack.".format(folder))
        if (int(ds.Rows), int(ds.Columns)) != (int(datasets[0].Rows), int(datasets[0].Columns)):
            raise RunnerError("{}: the slices differ in size (Rows x Columns); not one stack.".format(folder))
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    order = np.argsort(positions.dot(normal), kind="stable")
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    row_spacing, column_spacing = (float(v) for v in datasets[0].PixelSpacing)  # between rows, between columns
    if len(datasets) > 1:
        steps = positions[1:] - positions[:-1]
        lengths = np.sqrt((steps ** 2).sum(axis=1))
        if lengths.min() <= 0:
            raise RunnerError("{}: two slices at the same position; not one stack.".format(folder))
        if np.abs(lengths - lengths[0]).max() > max(SLICE_SPACING_TOLERANCE * lengths[0], SLICE_SPACING_TOLERANCE_MM):
            raise RunnerError("{}: the slice spacing is not uniform ({:.3f} to {:.3f} mm: a gap, or more than one stack).".format(folder, lengths.min(), lengths.max()))
        step = (positions[-1] - positions[0]) / (len(datasets) - 1)
    else:
        thickness = float(getattr(datasets[0], "SpacingBetweenSlices", 0) or getattr(datasets[0], "SliceThickness", 0) or 1.0)
        step = normal * thickness
    lps = np.eye(4)
    lps[:3, 0] = row_direction * column_spacing  # array axis 0: the column index
    lps[:3, 1] = column_direction * row_spacing  # array axis 1: the row index
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return datasets, LPS_TO_RAS.dot(lps)


def dicom_series_header(folder):
    """``(shape, affine)`` of a DICOM series folder from the headers alone (no pixel data read)."""
    datasets, affine = _geometry(folder, _slices(folder, headers_only=True))
    return (int(datasets[0].Columns), int(datasets[0].Rows), len(datasets)), affine


def dicom_series_datasets(folder):
    """The series' datasets (headers only, no pixel data), in the order :func:`read_dicom_series` stacks them."""
    datasets, _ = _geometry(folder, _slices(folder, headers_only=True))
    return datasets


def read_dicom_series(folder):
    """``(H, W, D)`` float32 voxels (rescaled) and the RAS affine of the one image series in ``folder``."""
    datasets, affine = _geometry(folder, _slices(folder, headers_only=False))
    planes = []
    for ds in datasets:
        try:
            pixels = ds.pixel_array
        except Exception as error:  # compressed without a decoder, truncated pixel data
            raise RunnerError("{}: the pixel data of {} cannot be decoded ({}).".format(folder, os.path.basename(str(ds.filename)), str(error).strip().splitlines()[0]))
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        planes.append((pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)).T)  # (columns, rows)
    return np.ascontiguousarray(np.stack(planes, axis=-1)), affine
