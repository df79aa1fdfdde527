"""Checks of input volumes from their NIfTI headers (cheap: no voxel data is read)."""

from __future__ import annotations

import os

import nibabel as nib

from jnet.errors import InputError

__all__ = ["check_image_header", "check_pair_headers", "image_channels"]


def _header_shape(path: str, listed_in: str | None = None) -> tuple[int, ...]:
    where = f" (listed in {listed_in})" if listed_in else ""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file does not exist{where}.")
    try:
        return tuple(int(n) for n in nib.load(path).shape)
    except Exception as e:  # nibabel raises several types for a file that is not NIfTI
        raise InputError(f"{path}: not a readable NIfTI file ({e}){where}.") from e


def image_channels(shape: tuple[int, ...]) -> int:
    """Channels of an image stored as ``H x W x D`` (1) or ``H x W x D x C`` (C)."""
    return 1 if len(shape) == 3 else shape[3]


def check_image_header(path: str, in_channels: int | None = None, listed_in: str | None = None) -> tuple[int, ...]:
    """The image's shape; raises :class:`InputError` when it is missing, unreadable, or has the wrong channels."""
    shape = _header_shape(path, listed_in)
    if len(shape) not in (3, 4):
        raise InputError(f"{path}: image has {len(shape)} dimensions {shape}; expected H x W x D or H x W x D x C.")
    if in_channels is not None and image_channels(shape) != in_channels:
        layout = "a 3D volume" if len(shape) == 3 else f"{shape[3]} channels"
        expected = "a 3D H x W x D NIfTI" if in_channels == 1 else f"a 4D H x W x D x {in_channels} NIfTI"
        raise InputError(
            f"{path}: image has {layout} (shape {shape}) but the bundle expects {in_channels} channel(s) ({expected})."
        )
    return shape


def check_pair_headers(image: str, label: str, in_channels: int | None = None, listed_in: str | None = None) -> None:
    """Image checks, plus: the label is a 3D volume with the image's spatial shape."""
    image_shape = check_image_header(image, in_channels, listed_in)
    label_shape = _header_shape(label, listed_in)
    if len(label_shape) == 4 and label_shape[3] == 1:
        label_shape = label_shape[:3]
    if len(label_shape) != 3:
        raise InputError(f"{label}: label has shape {label_shape}; expected a 3D H x W x D volume of class codes.")
    if label_shape != image_shape[:3]:
        raise InputError(f"{label}: label shape {label_shape} differs from its image's {image_shape[:3]} ({image}).")
