"""
The bundles' pre- and post-processing steps as numpy + nibabel functions: each step is also one MONAI transform
of the bundles (:mod:`jnet.transforms.pipeline` wraps these functions), so the bundles and the standalone runner
compute their pre- and post-processing with the same code.

Python 3.6 syntax, numpy + nibabel only.
"""

import gzip
import os

import nibabel as nib
import numpy as np

from .dicom import read_dicom_series
from .grids import join_sequences
from .params import RunnerError
from .resample import SLAB_SLICES, by_slabs, pad_or_crop, resize_slices, undo_pad_or_crop


def unscaled_gzip(image, path):
    """Whether ``image`` (nibabel, loaded from ``path``) is a ``.nii.gz`` whose voxels are stored as they are read
    (no slope/intercept): :func:`read_voxels` then decompresses them straight into their array."""
    proxy = image.dataobj
    plain = getattr(proxy, "slope", 1.0) == 1.0 and getattr(proxy, "inter", 0.0) == 0.0
    return str(path).endswith(".gz") and isinstance(proxy, nib.arrayproxy.ArrayProxy) and plain


def read_voxels(image, path, order=None):
    """The voxels of a nibabel image loaded from ``path``. An :func:`unscaled_gzip` file is decompressed 16 MB at a
    time straight into its array (nibabel's read, and gzip's ``readinto`` of the whole, hold the decompressed bytes
    and the array at once: twice the volume) and to the end of the stream, where gzip checks its CRC-32.
    ``order="C"``: a C-ordered array (NIfTI stores Fortran order), filled one in-plane image at a time - for callers
    that would otherwise copy the volume to C order (MONAI's ``LoadImage`` does)."""
    if not unscaled_gzip(image, path):
        return np.asanyarray(image.dataobj)
    proxy = image.dataobj
    fortran = proxy.order == "F"
    if order == "C" and fortran and len(proxy.shape) >= 2:
        return _read_fortran_into_c(proxy, path)
    data = np.empty(proxy.shape, dtype=proxy.dtype, order=proxy.order)
    buffer = memoryview(data.reshape(-1, order="A")).cast("B")
    with gzip.open(path, "rb") as stream:
        stream.seek(proxy.offset)
        _fill(stream, buffer, len(buffer))
        stream.read()  # to the end: gzip checks its CRC there, so damaged data that still decodes is caught
    return data


def _fill(stream, buffer, total, start=0):
    """Fill ``buffer`` from ``stream``, 16 MB at a time (gzip reads into a temporary); ``start`` and ``total``: where
    the buffer's bytes lie in the ``total`` bytes of voxel data (for the message of a file that ends early)."""
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled : filled + (1 << 24)])
        if not count:
            raise EOFError("the file ends after {} of {} bytes of voxel data".format(start + filled, total))
        filled += count


def _read_fortran_into_c(proxy, path):
    """A Fortran-ordered NIfTI's voxels into a C-ordered array, one in-plane image (axes 0, 1) at a time."""
    shape, dtype = tuple(proxy.shape), np.dtype(proxy.dtype)
    data = np.empty(shape, dtype=dtype)
    plane = np.empty((shape[1], shape[0]), dtype=dtype)  # one image as stored: axis 0 fastest
    buffer = memoryview(plane.reshape(-1)).cast("B")
    planes = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    with gzip.open(path, "rb") as stream:
        stream.seek(proxy.offset)
        for index in range(planes):
            _fill(stream, buffer, planes * len(buffer), index * len(buffer))
            rest = np.unravel_index(index, shape[2:], order="F") if len(shape) > 2 else ()
            data[(slice(None), slice(None)) + tuple(rest)] = plane.T
        stream.read()  # to the end: gzip's CRC check
    return data


def load_volume(path, in_channels):
    """``(C, H, W, D)`` float32 image and the affine of a 3D (one channel) or 4D (channels last) NIfTI file, or of
    a DICOM series folder (one channel); ``in_channels`` None: any number of channels."""
    if os.path.isdir(path):
        data, affine = read_dicom_series(path)
        image = nib.Nifti1Image(data, affine)
    else:
        try:
            image = nib.load(path)
            data = read_voxels(image, path)
        except Exception as error:  # nibabel raises many types for unreadable files
            raise RunnerError("{}: cannot be read as NIfTI ({}).".format(path, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__))
    if data.ndim == 3:
        data = data[None]
    elif data.ndim == 4:
        data = np.moveaxis(data, -1, 0)
    else:
        raise RunnerError("{}: a {}D image; expected a 3D volume or a 4D volume with channels last.".format(path, data.ndim))
    if in_channels is not None and data.shape[0] != in_channels:
        raise RunnerError("{}: image has {} channel(s), the model expects {}.".format(path, data.shape[0], in_channels))
    data = data.astype(np.float32, copy=False)  # nibabel's fresh array: no second copy of the volume
    if not all(np.isfinite(data[..., i : i + SLAB_SLICES]).all() for i in range(0, data.shape[-1], SLAB_SLICES)):
        raise RunnerError("{}: holds NaN or Inf voxel values; fix or re-export the file.".format(path))
    return data, np.asarray(image.affine, dtype=np.float64)


def load_case(paths, in_channels):
    """
    ``(C, H, W, D)`` float32 image and affine of a case: one NIfTI file, or a list of its sequence files (prostate
    T2 then ADC) on their own grids, every one after the first resampled onto the first's grid
    (:func:`join_sequences`, trilinear in world coordinates) - the mask is then written on the first file's grid.
    Returns the image, the affine and the notes (one line per resampled sequence).
    """
    if isinstance(paths, str):
        volume, affine = load_volume(paths, in_channels)
        return volume, affine, []
    loaded = [load_volume(path, None) for path in paths]
    channels = sum(volume.shape[0] for volume, _ in loaded)
    if channels != in_channels:
        raise RunnerError("{}: the case's {} files hold {} channel(s), the model expects {}.".format(paths[0], len(paths), channels, in_channels))
    try:
        volume, notes = join_sequences([v for v, _ in loaded], [a for _, a in loaded], list(paths))
    except ValueError as error:
        raise RunnerError(str(error))
    return volume, loaded[0][1], notes


def orientations(affine, axcodes="RAS"):
    """The nibabel orientations that take an image with ``affine`` to ``axcodes`` and back: ``(forward, undo)``."""
    source = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    target = nib.orientations.axcodes2ornt(tuple(axcodes))
    return nib.orientations.ornt_transform(source, target), nib.orientations.ornt_transform(target, source)


def oriented_view(volume, ornt):
    """A view of a channel-first ``(C, H, W, D)`` array with its spatial axes permuted and flipped by a nibabel
    orientation (no copy)."""
    return np.moveaxis(nib.orientations.apply_orientation(np.moveaxis(volume, 0, -1), ornt), -1, 0)


def flip_in_place(volume, axis):
    """Reverse ``axis`` of ``volume`` in place, swapping one pair of its slices at a time (the temporary is one
    slice, not the volume)."""
    length = volume.shape[axis]
    for i in range(length // 2):
        first = [slice(None)] * volume.ndim
        last = [slice(None)] * volume.ndim
        first[axis], last[axis] = i, length - 1 - i
        kept = volume[tuple(first)].copy()
        volume[tuple(first)] = volume[tuple(last)]
        volume[tuple(last)] = kept
    return volume


def oriented_in_place(volume, ornt):
    """:func:`apply_orientation` of a channel-first ``(C, H, W, D)`` array without a copy of it: the flips are done
    in place (``volume`` changes), the permutation is a view - positive strides only, so it can back a torch
    tensor."""
    ornt = np.asarray(ornt, dtype=np.float64)
    for axis, (_, flip) in enumerate(ornt):
        if flip == -1:
            flip_in_place(volume, axis + 1)
    return np.transpose(volume, (0,) + tuple(1 + int(a) for a in np.argsort(ornt[:, 0])))


def apply_orientation(volume, ornt):
    """Permute and flip the spatial axes of a channel-first ``(C, H, W, D)`` array by a nibabel orientation."""
    return np.ascontiguousarray(oriented_view(volume, ornt))


def reorient(volume, affine, axcodes="RAS"):
    """Reorient the spatial axes of ``(C, H, W, D)`` to ``axcodes``; returns the array and the orientation that
    undoes it (for :func:`apply_orientation`)."""
    forward, undo = orientations(affine, axcodes)
    return apply_orientation(volume, forward), undo


def normalize(volume, channel_wise=True, nonzero=False, in_place=False):
    """z-normalisation (MONAI's ``NormalizeIntensity``: population std, a zero std left as 1); ``in_place``: of
    a float32 ``volume`` itself, no copy."""
    out = volume if in_place and volume.dtype == np.float32 else volume.astype(np.float32)
    groups = [out[c : c + 1] for c in range(out.shape[0])] if channel_wise else [out]
    for group in groups:  # views into out
        if nonzero:
            mask = group != 0
            if mask.any():
                values = group[mask]
                group[mask] = (values - values.mean(dtype=np.float64)) / (values.std(dtype=np.float64) or 1.0)
            continue
        mean, std = _mean_std(group)
        group -= np.float32(mean)
        group /= np.float32(std)
    return out


def _mean_std(group, slab=SLAB_SLICES):
    """Mean and population std (a zero std as 1) of a ``(c, H, W[, D])`` array, two passes in float64 over slabs
    of slices: no float64 copy of the whole volume."""
    slabs = [group[..., i : i + slab] for i in range(0, group.shape[-1], slab)] if group.ndim == 4 else [group]
    mean = sum(float(s.sum(dtype=np.float64)) for s in slabs) / group.size
    variance = sum(float(np.square(s.astype(np.float64) - mean).sum()) for s in slabs) / group.size
    return mean, (variance ** 0.5) or 1.0


def pad_square(volume):
    """Pad the in-plane axes (1, 2) of ``(C, H, W[, D])`` with zeros to a centred square; returns it and the pads
    ``[(top, bottom), (left, right)]``. Square slices come back as they are (no copy)."""
    side = max(volume.shape[1:3])
    pads = [((side - n) // 2, side - n - (side - n) // 2) for n in volume.shape[1:3]]
    if volume.shape[1] == volume.shape[2]:
        return volume, pads
    return np.pad(volume, [(0, 0)] + pads + [(0, 0)] * (volume.ndim - 3), mode="constant"), pads


def crop_square(volume, pads):
    """Undo :func:`pad_square` with its ``pads``."""
    (top, bottom), (left, right) = pads
    return volume[:, top : volume.shape[1] - bottom, left : volume.shape[2] - right]


def to_grid(volume, size, grid, mode="linear"):
    """
    Square ``(C, s, s[, D])`` slices onto the ``size x size`` output grid: ``grid`` ``{"type": "resize",
    "anti_aliasing": bool}`` (``mode`` ``linear`` for images, anti-aliased when asked; ``nearest`` for labels) or
    ``{"type": "pad_or_crop"}`` (centred zero padding or cropping).
    """
    if grid["type"] == "resize":
        return resize_slices(volume, size, mode, grid.get("anti_aliasing", False) and mode == "linear")
    return by_slabs(lambda slab: pad_or_crop(pad_or_crop(slab, 1, size), 2, size), volume, size)


def from_grid(volume, side, grid, mode="linear"):
    """Undo :func:`to_grid` for ``(K, size, size[, D])`` probabilities: resize to ``side`` (``mode`` linear, or
    nearest for label codes), or crop/pad."""
    if grid["type"] == "resize":
        return resize_slices(volume, side, mode)
    return undo_pad_or_crop(undo_pad_or_crop(volume, 1, side), 2, side)


def normalize_volume(volume, params, in_place=False):
    """Step 3 on a whole ``(C, H, W, D)`` volume: the z-normalisation of ``params``."""
    norm = params["normalize"]
    return normalize(volume, norm.get("channel_wise", True), norm.get("nonzero", False), in_place)


def preprocess(volume, params, normalized=False):
    """
    ``(C, H, W, D)`` image in RAS -> ``(D, C, r, r)`` network input and the state :func:`postprocess` needs.
    Steps 3-6 of the module docstring; ``normalized``: step 3 is done (:func:`normalize_volume` on the whole
    volume, so that steps 4-6, slice by slice, can run on a slab of its slices).
    """
    image = volume if normalized else normalize_volume(volume, params)
    image, pads = pad_square(image)
    side = image.shape[1]
    image = to_grid(image, params["output_size"], params["grid"])
    low = resize_slices(image, params["input_size"], params["lowres_mode"])
    return np.ascontiguousarray(np.transpose(low, (3, 0, 1, 2))), {"pads": pads, "side": side}


def activate(logits, activation):
    """Per-class probabilities of ``(K, ...)`` logits."""
    logits = logits.astype(np.float32)
    if activation == "sigmoid":
        return 0.5 + 0.5 * np.tanh(0.5 * logits)  # the logistic function, without overflow for large |logits|
    shifted = np.exp(logits - logits.max(axis=0, keepdims=True))
    return shifted / shifted.sum(axis=0, keepdims=True)


def to_labels(probabilities, labels):
    """``(K, ...)`` probabilities -> ``(...)`` uint8 labels: argmax, or nested regions (for BraTS: TC, WT, ET
    thresholded, written as the layout's codes with ET over TC over WT)."""
    if labels["type"] == "argmax":
        return probabilities.argmax(axis=0).astype(np.uint8)
    codes, threshold = labels["codes"], labels.get("threshold", 0.5)
    core, whole, enhancing = probabilities > threshold
    out = np.zeros(core.shape, dtype=np.uint8)
    out[whole] = codes["edema"]
    out[core] = codes["core"]
    out[enhancing] = codes["enhancing"]
    return out


def uniform_mask_warning(path, labels):
    """The warning for a mask whose every voxel has one label (likely untrained weights, or an input unlike the
    training data: another modality, channel order or orientation), else None."""
    low, high = labels.min(), labels.max()  # two linear passes, no sort: this runs on every written mask
    if low != high:
        return None
    return (
        "{}: every voxel of the mask is label {} - check the weights (trained?) and the input (modality, channel "
        "order, orientation).".format(path, int(low))
    )


def postprocess(logits, state, params):
    """
    ``(d, K, out, out)`` network logits of ``d`` slices -> ``(H, W, d)`` uint8 labels on the RAS grid of the input
    (steps 8-10; :func:`apply_orientation` does 11). Slices are independent: any batch of them at a time.
    """
    probabilities = activate(np.transpose(logits, (1, 2, 3, 0)), params["activation"])
    probabilities = crop_square(from_grid(probabilities, state["side"], params["grid"]), state["pads"])
    return to_labels(probabilities, params["labels"])
