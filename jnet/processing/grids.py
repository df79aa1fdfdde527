"""
Sequences on their own grids brought onto one: world-coordinate resampling of ``(C, H, W, D)`` volumes (linear or
nearest, zeros outside, PyTorch ``grid_sample`` semantics with voxel centres at integer indices), the checks that
decide whether two grids can be joined, and the obliquity of a grid.

Python 3.6 syntax, numpy (and nibabel's ``io_orientation``) only.
"""

import nibabel as nib
import numpy as np

# voxel axes rotated more than this from the scanner axes get a warning: the network sees the anatomy rotated
OBLIQUE_WARNING_DEGREES = 3.0
# two grids are the same when their corners lie within this share of the smallest voxel spacing of each other
SAME_GRID_TOLERANCE = 0.1


def world_corners(affine, shape, margin=0.0):
    """World coordinates ``(8, 3)`` of the corner voxels' centres of a grid of ``shape`` (its first three axes);
    ``margin`` voxels beyond them (0.5: the outer faces of the corner voxels, the grid's extent)."""
    low, high = -margin, [n - 1 + margin for n in shape[:3]]
    corners = np.array([[i, j, k] for i in (low, high[0]) for j in (low, high[1]) for k in (low, high[2])], dtype=np.float64)
    affine = np.asarray(affine, dtype=np.float64)
    return corners.dot(affine[:3, :3].T) + affine[:3, 3]


def spacing(affine):
    """Voxel spacing (mm) along the three axes."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def grid_offset_mm(affine, other_affine, shape):
    """The largest distance (mm) between the world positions of the corner voxels of ``shape`` under ``affine`` and
    under ``other_affine``: 0 for the same grid."""
    return float(np.sqrt(((world_corners(affine, shape) - world_corners(other_affine, shape)) ** 2).sum(axis=1)).max())


def same_grid(affine, shape, other_affine, other_shape):
    """Whether two grids are one: the same shape and corners within :data:`SAME_GRID_TOLERANCE` of a voxel."""
    if tuple(shape[:3]) != tuple(other_shape[:3]):
        return False
    return grid_offset_mm(affine, other_affine, shape) <= SAME_GRID_TOLERANCE * spacing(affine).min()


def overlap_fraction(affine, shape, other_affine, other_shape):
    """The share of the reference grid's (``affine``, ``shape``) world bounding box (voxel extents) that the other
    grid's box covers: 0 when they do not meet."""
    box, other = world_corners(affine, shape, 0.5), world_corners(other_affine, other_shape, 0.5)  # voxel extents
    low = np.maximum(box.min(axis=0), other.min(axis=0))
    high = np.minimum(box.max(axis=0), other.max(axis=0))
    extent = np.maximum(box.max(axis=0) - box.min(axis=0), 1e-6)
    return float(np.prod(np.clip(high - low, 0, None) / extent))


OBLIQUE_CHOICES = ("as_is", "axis_aligned")


def oblique_warning(path, affine, oblique="as_is"):
    """The warning for a grid whose voxel axes are more than :data:`OBLIQUE_WARNING_DEGREES` off the scanner axes
    (the network sees the anatomy rotated), else None; ``oblique`` the choice made for it (:data:`OBLIQUE_CHOICES`)."""
    angle = obliquity_degrees(affine)
    if angle <= OBLIQUE_WARNING_DEGREES:
        return None
    if oblique == "axis_aligned":
        return (
            "{}: oblique acquisition - the voxel axes are {:.1f} degrees off the scanner axes; resampled (trilinear) onto "
            "the nearest axis-aligned grid, where the mask is written (oblique 'axis_aligned').".format(path, angle)
        )
    return (
        "{}: oblique acquisition - the voxel axes are {:.1f} degrees off the scanner axes; it runs as is, so the network "
        "sees the anatomy rotated by that angle (oblique 'axis_aligned' resamples it onto the nearest axis-aligned "
        "grid: docs/hospital.md).".format(path, angle)
    )


def axis_aligned_grid(affine, shape):
    """
    The nearest axis-aligned grid to an oblique one: each voxel axis turned onto the world axis it is closest to
    (same direction, same spacing), the grid covering the oblique grid's whole extent. Returns ``(affine, shape)``;
    an axis-aligned grid comes back as it is.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if obliquity_degrees(affine) == 0.0:
        return affine.copy(), tuple(int(n) for n in shape[:3])
    steps = spacing(affine)
    rotation = np.zeros((3, 3))
    for axis, (world, sign) in enumerate(nib.orientations.io_orientation(affine)):  # the closest world axis of each
        rotation[int(world), axis] = sign * steps[axis]
    corners = world_corners(affine, shape, margin=0.5)  # the oblique grid's extent
    voxels = np.linalg.solve(rotation, (corners - affine[:3, 3]).T).T  # in the new axes, origin at the old origin
    low, high = voxels.min(axis=0), voxels.max(axis=0)
    first = np.floor(low + 0.5 + 1e-6)  # voxels whose extent reaches into the oblique grid's: the whole of it covered
    last = np.ceil(high - 0.5 - 1e-6)
    new_shape = tuple(int(n) for n in np.maximum(last - first + 1, 1))
    new_affine = np.eye(4)
    new_affine[:3, :3] = rotation
    new_affine[:3, 3] = affine[:3, 3] + rotation.dot(first)
    return new_affine, new_shape


def to_axis_aligned(volume, affine):
    """A channel-first ``(C, H, W, D)`` volume on an oblique grid resampled (trilinear, zero outside) onto
    :func:`axis_aligned_grid`; returns the volume and its affine."""
    new_affine, new_shape = axis_aligned_grid(affine, volume.shape[1:4])
    return resample_to_grid(volume, affine, new_affine, new_shape, order=1), new_affine


def obliquity_degrees(affine):
    """How far the voxel axes are rotated from the nearest scanner (world) axes: the largest angle, in degrees,
    between a voxel axis and the world axis it is closest to. 0 for an axis-aligned grid (flips and permutations
    included)."""
    directions = np.asarray(affine, dtype=np.float64)[:3, :3]
    directions = directions / np.maximum(np.sqrt((directions ** 2).sum(axis=0)), 1e-12)
    cosines = np.abs(directions).max(axis=0)
    return float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))


def _sample_axis(array, axis, coordinates, order):
    """``array`` sampled along ``axis`` at the (fractional) voxel ``coordinates``: linear or nearest, zero outside."""
    length = array.shape[axis]
    shape = [1] * array.ndim
    shape[axis] = len(coordinates)
    if order == 0:
        index = np.floor(coordinates + 0.5).astype(np.int64)
        inside = ((index >= 0) & (index < length)).reshape(shape)
        return np.where(inside, np.take(array, np.clip(index, 0, length - 1), axis=axis), 0).astype(array.dtype)
    low = np.floor(coordinates).astype(np.int64)
    fraction = (coordinates - low).astype(np.float32)
    out = 0
    for index, weight in ((low, 1.0 - fraction), (low + 1, fraction)):
        weight = np.where((index >= 0) & (index < length), weight, 0.0).astype(np.float32).reshape(shape)
        out = out + weight * np.take(array, np.clip(index, 0, length - 1), axis=axis)
    return out


def resample_to_grid(volume, affine, target_affine, target_shape, order=1):
    """
    ``(C, H, W, D)`` ``volume`` with ``affine`` resampled onto the grid ``target_affine`` x ``target_shape`` (three
    spatial sizes) in world coordinates: trilinear (``order=1``, images) or nearest (``order=0``, labels), zero
    outside the volume. One target slice at a time, so the working memory is a few slices, not the volume.
    """
    volume = np.asarray(volume)
    target_shape = tuple(int(n) for n in target_shape[:3])
    mapping = np.linalg.inv(np.asarray(affine, dtype=np.float64)).dot(np.asarray(target_affine, dtype=np.float64))
    dtype = np.float32 if order else volume.dtype
    if np.abs(mapping[:3, :3] - np.diag(np.diag(mapping[:3, :3]))).max() < 1e-9:  # axis-aligned: separable, exact
        out = volume if order == 0 else volume.astype(np.float32)
        for axis in range(3):
            coordinates = mapping[axis, axis] * np.arange(target_shape[axis]) + mapping[axis, 3]
            out = _sample_axis(out, axis + 1, coordinates, order)
        return out.astype(dtype)
    out = np.zeros((volume.shape[0],) + target_shape, dtype=dtype)
    rows, cols = np.meshgrid(np.arange(target_shape[0]), np.arange(target_shape[1]), indexing="ij")
    plane = np.stack([rows.ravel(), cols.ravel()], axis=0).astype(np.float64)  # (2, H*W)
    size = np.array(volume.shape[1:4])
    flat = volume.reshape(volume.shape[0], -1)
    for k in range(target_shape[2]):
        points = mapping[:3, :2].dot(plane) + (mapping[:3, 2] * k + mapping[:3, 3])[:, None]  # (3, H*W) source voxels
        if order == 0:
            index = np.floor(points + 0.5).astype(np.int64)
            inside = ((index >= 0) & (index < size[:, None])).all(axis=0)
            values = np.zeros((volume.shape[0], points.shape[1]), dtype=dtype)
            linear = np.ravel_multi_index(tuple(index[:, inside]), tuple(size))
            values[:, inside] = flat[:, linear]
        else:
            base = np.floor(points).astype(np.int64)
            fraction = (points - base).astype(np.float32)
            values = np.zeros((volume.shape[0], points.shape[1]), dtype=np.float32)
            for corner in range(8):
                offset = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])[:, None]
                index = base + offset
                weight = np.prod(np.where(offset == 1, fraction, 1.0 - fraction), axis=0)
                inside = ((index >= 0) & (index < size[:, None])).all(axis=0)
                linear = np.ravel_multi_index(tuple(index[:, inside]), tuple(size))
                values[:, inside] += weight[inside] * flat[:, linear].astype(np.float32)
        out[:, :, :, k] = values.reshape((volume.shape[0],) + target_shape[:2])
    return out


def join_sequences(volumes, affines, names):
    """
    One ``(C, H, W, D)`` float32 case from several sequence volumes (each ``(c, h, w, d)``) on their own grids:
    every sequence after the first resampled (trilinear, world coordinates) onto the first's grid, then the
    channels concatenated in order. Returns the volume and the notes (one line per resampled sequence). A sequence
    whose grid does not meet the first's raises ``ValueError`` naming both files.
    """
    reference, reference_affine = volumes[0], affines[0]
    shape = reference.shape[1:4]
    parts, notes = [reference.astype(np.float32)], []
    for volume, affine, name in zip(volumes[1:], affines[1:], names[1:]):
        if same_grid(reference_affine, shape, affine, volume.shape[1:4]):
            parts.append(volume.astype(np.float32))
            continue
        if overlap_fraction(reference_affine, shape, affine, volume.shape[1:4]) == 0.0:
            raise ValueError(
                "{}: its grid does not overlap the grid of {} in world coordinates - not the same patient position "
                "or a wrong affine; cannot be resampled onto it.".format(name, names[0])
            )
        parts.append(resample_to_grid(volume, affine, reference_affine, shape, order=1))
        notes.append("{} ({} voxels, {} mm) resampled linearly onto the grid of {} ({} voxels, {} mm)".format(
            name, "x".join(str(n) for n in volume.shape[1:4]), "x".join("{:.2f}".format(s) for s in spacing(affine)),
            names[0], "x".join(str(n) for n in shape), "x".join("{:.2f}".format(s) for s in spacing(reference_affine))))
    return np.concatenate(parts, axis=0), notes
