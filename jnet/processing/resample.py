"""
numpy resampling of ``(C, H, W[, D])`` arrays, computed as MONAI/PyTorch do: linear (``align_corners=False``),
area, nearest / nearest-exact, Gaussian anti-aliasing, and centred pad/crop.

Python 3.6 syntax, numpy only.
"""

import math

import numpy as np

SLAB_SLICES = 16  # slices resized at a time: bounds the temporaries of a whole-volume resize


def _gaussian_kernel(sigma, truncated=4.0):
    """MONAI's ``gaussian_1d(approx="erf")`` (not normalised): the Gaussian integrated over each pixel."""
    tail = int(max(sigma * truncated, 0.5) + 0.5)
    t = 0.70710678 / sigma
    return np.array([max(0.5 * (math.erf(t * (x + 0.5)) - math.erf(t * (x - 0.5))), 0.0) for x in range(-tail, tail + 1)])


def _smooth_axis(array, axis, sigma):
    """Gaussian smoothing along ``axis`` with zero padding (MONAI's ``GaussianSmooth``), in float32."""
    kernel = _gaussian_kernel(sigma).astype(np.float32)
    tail = len(kernel) // 2
    pad = [(0, 0)] * array.ndim
    pad[axis] = (tail, tail)
    padded = np.pad(array.astype(np.float32), pad, mode="constant")
    out = np.zeros(array.shape, dtype=np.float32)
    window = [slice(None)] * array.ndim
    for offset, weight in enumerate(kernel):
        window[axis] = slice(offset, offset + array.shape[axis])
        out += weight * padded[tuple(window)]  # a view of the padded array: no copy per tap
    return out


def _linear_axis(array, axis, size):
    """Linear interpolation along ``axis`` to ``size`` samples (PyTorch's ``align_corners=False``)."""
    length = array.shape[axis]
    if length == size:
        return array
    source = np.maximum((np.arange(size) + 0.5) * (float(length) / size) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), length - 1)
    high = np.minimum(low + 1, length - 1)
    shape = [1] * array.ndim
    shape[axis] = size
    frac = (source - low).astype(array.dtype).reshape(shape)
    return np.take(array, low, axis=axis) * (1.0 - frac) + np.take(array, high, axis=axis) * frac


def _nearest_axis(array, axis, size, exact=False):
    """Nearest-neighbour sampling along ``axis`` (PyTorch's ``nearest`` / ``nearest-exact``)."""
    length = array.shape[axis]
    scale = float(length) / size
    position = (np.arange(size) + (0.5 if exact else 0.0)) * scale
    return np.take(array, np.minimum(np.floor(position).astype(np.int64), length - 1), axis=axis)


def _area_axis(array, axis, size):
    """Mean over the covered input pixels along ``axis`` (PyTorch's ``area`` = adaptive average pooling)."""
    length = array.shape[axis]
    if length % size == 0:
        shape = array.shape[:axis] + (size, length // size) + array.shape[axis + 1 :]
        return array.reshape(shape).mean(axis=axis + 1)
    starts = [(i * length) // size for i in range(size)]
    ends = [-((-(i + 1) * length) // size) for i in range(size)]
    parts = [np.take(array, np.arange(s, e), axis=axis).mean(axis=axis, keepdims=True) for s, e in zip(starts, ends)]
    return np.concatenate(parts, axis=axis)


def by_slabs(step, volume, size, dtype=None):
    """``step`` (in-plane only, to ``size x size``) of a ``(C, H, W[, D])`` array, one slab of
    :data:`SLAB_SLICES` slices at a time into one output (of ``dtype``, default ``volume``'s): the temporaries are
    a slab's. Slices are independent, so this equals ``step`` on the whole array."""
    if volume.ndim < 4 or volume.shape[3] <= SLAB_SLICES:
        return step(volume)
    out = np.empty(volume.shape[:1] + (size, size) + volume.shape[3:], dtype=dtype or volume.dtype)
    for start in range(0, volume.shape[3], SLAB_SLICES):
        out[..., start : start + SLAB_SLICES] = step(volume[..., start : start + SLAB_SLICES])
    return out


def resize_slices(volume, size, mode="linear", anti_aliasing=False):
    """
    Resize the in-plane axes (1, 2) of a ``(C, H, W, D)`` array to ``size x size``, slices (axis 3) unchanged -
    MONAI's ``Resize((size, size, -1))``: ``mode`` ``linear`` (trilinear), ``area``, ``nearest`` or
    ``nearest-exact``; ``anti_aliasing`` smooths each downsampled axis with sigma ``(factor - 1) / 2`` first.
    """
    if volume.ndim == 4 and volume.shape[3] > SLAB_SLICES and volume.shape[1:3] != (size, size):
        # a slab at a time: the smoothing's padded copies and the interpolation's gathers are a slab's
        return by_slabs(lambda slab: resize_slices(slab, size, mode, anti_aliasing), volume, size, np.float32)
    out = volume.astype(np.float32)
    if out.shape[1:3] == (size, size):
        return out
    for axis in (1, 2):
        factor = float(out.shape[axis]) / size
        if anti_aliasing and factor > 1:
            out = _smooth_axis(out, axis, (factor - 1) / 2)
    for axis in (1, 2):
        if mode in ("linear", "bilinear", "trilinear"):
            out = _linear_axis(out, axis, size)
        elif mode == "area":
            out = _area_axis(out, axis, size)
        else:
            out = _nearest_axis(out, axis, size, exact=mode == "nearest-exact")
    return out.astype(np.float32)


def grid_start(length, size):
    """Where a centred window of ``size`` samples starts on an axis of ``length``: the first sample of a centre
    crop, or minus the zero padding put before the axis (MONAI's ``ResizeWithPadOrCrop``, symmetric padding)."""
    return length // 2 - size // 2 if length >= size else -((size - length) // 2)


def pad_or_crop(volume, axis, size):
    """Pad with zeros (symmetric) or centre-crop ``axis`` to ``size`` (MONAI's ``ResizeWithPadOrCrop``)."""
    length, start = volume.shape[axis], grid_start(volume.shape[axis], size)
    if start < 0:
        pad = [(0, 0)] * volume.ndim
        pad[axis] = (-start, size - length + start)
        return np.pad(volume, pad, mode="constant")
    return np.take(volume, np.arange(start, start + size), axis=axis)


def undo_pad_or_crop(volume, axis, length):
    """Reverse :func:`pad_or_crop` of an axis that had ``length`` samples (cropped regions come back as zeros)."""
    size, start = volume.shape[axis], grid_start(length, volume.shape[axis])
    if start < 0:
        return np.take(volume, np.arange(-start, -start + length), axis=axis)
    pad = [(0, 0)] * volume.ndim
    pad[axis] = (start, length - size - start)
    return np.pad(volume, pad, mode="constant")

