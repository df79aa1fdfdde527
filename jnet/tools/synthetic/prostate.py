"""A synthetic dataset in the Decathlon Task05_Prostate layout, deterministic from a seed.

The files are what the real loading code reads: ``imagesTr/*.nii.gz`` (4D float32, H x W x D x 2: a T2-like and an
ADC-like channel), ``labelsTr/*.nii.gz`` (uint8: 0 background, 1 peripheral zone - a crescent around the posterior
part of 2 - and 2 transition zone, a compact gland-like body), ``imagesTs/*.nii.gz`` and ``dataset.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .decathlon import save_decathlon_case, write_dataset_json

__all__ = ["ProstateCase", "make_prostate_case", "write_prostate_task"]

DEFAULT_SLICE_SIZES = ((256, 256), (320, 320), (384, 384), (320, 256))


@dataclass
class ProstateCase:
    image: np.ndarray  # (H, W, D, 2) float32
    label: np.ndarray  # (H, W, D) uint8
    affine: np.ndarray  # (4, 4)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), sigma=sigma)
    return field / (field.std() + 1e-8)


def make_prostate_case(
    rng: np.random.Generator,
    slice_sizes: Sequence[Sequence[int]] = DEFAULT_SLICE_SIZES,
    num_slices: tuple[int, int] = (15, 20),
) -> ProstateCase:
    """One synthetic prostate MR volume with varied size, position, rotation, contrast, noise, bias and spacing."""
    height, width = (int(n) for n in slice_sizes[rng.integers(len(slice_sizes))])
    depth = int(rng.integers(num_slices[0], num_slices[1] + 1))
    in_plane = rng.uniform(0.55, 0.7) * min(1.0, 320 / max(height, width))  # similar field of view
    spacing = (in_plane, in_plane, rng.uniform(3.0, 4.0))

    # physical coordinates (mm) of every voxel, centred in-plane
    x = (np.arange(height) - height / 2) * spacing[0]
    y = (np.arange(width) - width / 2) * spacing[1]
    z = np.arange(depth) * spacing[2]
    xx, yy = np.meshgrid(x, y, indexing="ij")

    centre = rng.normal(0.0, 8.0, size=2)
    angle = np.deg2rad(rng.uniform(-25, 25))
    semi_a = rng.uniform(14, 22)
    semi_b = semi_a * rng.uniform(0.7, 0.95)
    z_centre = z[-1] / 2 + rng.normal(0, spacing[2])
    z_half = rng.uniform(0.3, 0.42) * z[-1]
    lobes, lobe_phase = int(rng.integers(2, 5)), rng.uniform(0, 2 * np.pi)
    pz_span = np.deg2rad(rng.uniform(60, 100))  # half-angle of the peripheral-zone crescent
    pz_thickness = rng.uniform(1.25, 1.45)

    # rotated gland frame: u along the long axis, v posterior-anterior
    u = np.cos(angle) * (xx - centre[0]) + np.sin(angle) * (yy - centre[1])
    v = -np.sin(angle) * (xx - centre[0]) + np.cos(angle) * (yy - centre[1])
    phi = np.arctan2(v, u)
    radius = np.sqrt((u / semi_a) ** 2 + (v / semi_b) ** 2) / (1 + 0.08 * np.sin(lobes * phi + lobe_phase))
    posterior = np.abs(np.angle(np.exp(1j * (phi - np.pi / 2)))) < pz_span

    label = np.zeros((height, width, depth), np.uint8)
    for k in range(depth):
        extent = 1 - ((z[k] - z_centre) / z_half) ** 2
        if extent <= 0:
            continue
        scale = np.sqrt(extent)
        transition = radius < scale
        peripheral = (radius < scale * pz_thickness) & posterior & ~transition
        label[..., k][peripheral] = 1
        label[..., k][transition] = 2

    body = ((xx / (0.45 * height * spacing[0])) ** 2 + (yy / (0.4 * width * spacing[1])) ** 2) < 1
    body = np.repeat(body[..., None], depth, axis=2)
    texture = _smooth_noise(rng, (height, width, depth), sigma=(4, 4, 0.7))
    # bias field: exp of a random quadratic polynomial of the normalised coordinates
    xn, yn, zn = np.meshgrid(x / np.abs(x).max(), y / np.abs(y).max(), np.linspace(-1, 1, depth), indexing="ij")
    poly = sum(c * t for c, t in zip(rng.normal(0, 0.15, 6), (xn, yn, zn, xn * yn, xn**2, yn**2)))
    bias = np.exp(poly)

    # class-wise mean intensities (T2: bright PZ, mid TZ; ADC: high PZ, lower TZ), with per-case contrast
    t2_levels = np.array([0.35, 0.8, 0.5]) * rng.uniform(0.85, 1.15, 3)
    adc_levels = np.array([0.6, 0.9, 0.5]) * rng.uniform(0.85, 1.15, 3)
    channels = []
    for levels, texture_gain in ((t2_levels, 0.08), (adc_levels, 0.05)):
        tissue = levels[label] * body + texture_gain * texture * body
        tissue = gaussian_filter(tissue, sigma=(0.8, 0.8, 0)) * bias
        tissue += rng.uniform(0.01, 0.04) * rng.standard_normal(tissue.shape)
        channels.append(np.clip(tissue, 0, None) * rng.uniform(600, 1400))
    image = np.stack(channels, axis=-1).astype(np.float32)

    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = rng.uniform(-100, 100, 3)
    return ProstateCase(image=image, label=label, affine=affine)


def write_prostate_task(
    out_dir: str,
    num_train: int = 16,
    num_test: int = 2,
    seed: int = 0,
    slice_sizes: Sequence[Sequence[int]] = DEFAULT_SLICE_SIZES,
    num_slices: tuple[int, int] = (15, 20),
) -> str:
    """
    Write a synthetic Task05_Prostate-format dataset to ``out_dir`` and return the path of its ``dataset.json``.
    Case ``i`` depends only on ``(seed, i)``, so a larger dataset extends a smaller one with the same seed.
    """
    training, test = [], []
    for index in range(num_train + num_test):
        case = make_prostate_case(np.random.default_rng([seed, index]), slice_sizes, tuple(num_slices))
        labelled = index < num_train
        entry = save_decathlon_case(out_dir, f"prostate_{index:02d}.nii.gz", case.image, case.affine, case.label if labelled else None)
        (training if labelled else test).append(entry)
    header = {
        "name": "PROSTATE (synthetic)",
        "description": f"Synthetic prostate MR volumes in the Decathlon Task05 layout, seed {seed}",
        "reference": "generated by jnet synthetic",
        "licence": "CC-BY-SA 4.0",
        "tensorImageSize": "4D",
        "modality": {"0": "T2", "1": "ADC"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
    }
    return write_dataset_json(out_dir, header, training, test)
