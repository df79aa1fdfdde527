"""A synthetic brain-tumour dataset in either BraTS layout (Decathlon Task01 or BraTS 2018-2021 case folders).

A skull-stripped brain-like ellipsoid with a tumour of nested sub-regions: edema around a core whose rim enhances
around a necrotic centre. Four channels FLAIR, T1, T1ce/T1gd, T2 with region-specific contrasts, deterministic
from a seed; labels in the layout's own codes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from jnet.data.layouts.brats import LAYOUTS, MODALITY_SUFFIXES

from .decathlon import save_decathlon_case, write_dataset_json

__all__ = ["BratsCase", "make_brats_case", "write_brats_task"]

# mean intensity per tissue: background-brain, edema, necrotic core, enhancing rim; one row per channel
CONTRASTS = np.array(
    [
        [0.40, 0.90, 0.70, 0.75],  # FLAIR: edema bright
        [0.55, 0.45, 0.30, 0.40],  # T1: tumour dark
        [0.50, 0.50, 0.20, 1.00],  # T1ce: enhancing rim bright, necrosis dark
        [0.45, 0.85, 0.95, 0.70],  # T2: fluid and edema bright
    ]
)


@dataclass
class BratsCase:
    image: np.ndarray  # (H, W, D, 4) float32
    tissue: np.ndarray  # (H, W, D) uint8: 0 none, 1 edema, 2 necrotic core, 3 enhancing
    affine: np.ndarray


def make_brats_case(rng: np.random.Generator, size: tuple[int, int] = (240, 240), num_slices: tuple[int, int] = (20, 28)) -> BratsCase:
    height, width = size
    depth = int(rng.integers(num_slices[0], num_slices[1] + 1))
    x, y, z = np.meshgrid(np.arange(height) - height / 2, np.arange(width) - width / 2, np.arange(depth) - depth / 2, indexing="ij")
    brain = (x / (0.40 * height)) ** 2 + (y / (0.33 * width)) ** 2 + (z / (0.9 * depth)) ** 2 < 1

    centre = np.array([rng.uniform(-0.2, 0.2) * height, rng.uniform(-0.15, 0.15) * width, rng.uniform(-0.15, 0.15) * depth])
    wt_radius = rng.uniform(0.08, 0.14) * min(height, width)
    core_share, necrosis_share = rng.uniform(0.45, 0.7), rng.uniform(0.3, 0.7)
    lobes, phase = int(rng.integers(2, 5)), rng.uniform(0, 2 * np.pi)
    dx, dy, dz = x - centre[0], y - centre[1], (z - centre[2]) * 4.0  # slices are thick: shorter in z
    angle = np.arctan2(dy, dx)
    radius = np.sqrt(dx**2 + dy**2 + dz**2) / (1 + 0.15 * np.sin(lobes * angle + phase))

    tissue = np.zeros((height, width, depth), np.uint8)
    tissue[(radius < wt_radius) & brain] = 1
    tissue[(radius < wt_radius * core_share) & brain] = 3
    tissue[(radius < wt_radius * core_share * necrosis_share) & brain] = 2

    texture = gaussian_filter(rng.standard_normal((height, width, depth)), sigma=(3, 3, 0.7))
    texture /= texture.std() + 1e-8
    channels = []
    for contrast in CONTRASTS * rng.uniform(0.9, 1.1, CONTRASTS.shape):
        values = contrast[tissue] * brain + 0.06 * texture * brain
        values = gaussian_filter(values, sigma=(0.7, 0.7, 0)) + rng.uniform(0.01, 0.03) * rng.standard_normal(values.shape) * brain
        channels.append(np.clip(values, 0, None) * rng.uniform(300, 1200))
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = rng.uniform(-120, 120, 3)
    return BratsCase(np.stack(channels, -1).astype(np.float32), tissue, affine)


def _codes(tissue: np.ndarray, layout: str) -> np.ndarray:
    codes = LAYOUTS[layout]
    lookup = np.array([0, codes.edema, codes.core, codes.enhancing], np.uint8)
    return lookup[tissue]


def write_brats_task(
    out_dir: str,
    layout: str = "decathlon",
    num_train: int = 8,
    num_test: int = 2,
    seed: int = 0,
    size: tuple[int, int] = (240, 240),
    num_slices: tuple[int, int] = (20, 28),
) -> str:
    """Write a synthetic BraTS dataset in ``layout`` (``"decathlon"`` or ``"brats2021"``); returns ``out_dir``.

    Decathlon: ``dataset.json``, ``imagesTr/BRATS_XXX.nii.gz`` (4D), ``labelsTr/``, ``imagesTs/``.
    BraTS 2021: ``TrainingData/BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,t1,t1ce,t2,seg}.nii.gz`` for the labelled
    cases and ``ValidationData/BraTS2021_XXXXX/`` (no seg) for the test cases, as BraTS distributes them; point
    ``--dataset_dir`` at ``TrainingData`` (or ``ValidationData`` for inference).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}.")
    training, test = [], []
    for index in range(num_train + num_test):
        case = make_brats_case(np.random.default_rng([seed, index, 7]), tuple(size), tuple(num_slices))
        label = _codes(case.tissue, layout)
        labelled = index < num_train
        if layout == "decathlon":
            entry = save_decathlon_case(out_dir, f"BRATS_{index:03d}.nii.gz", case.image, case.affine, label if labelled else None)
            (training if labelled else test).append(entry)
            continue
        name = f"BraTS2021_{index:05d}"
        case_dir = os.path.join(out_dir, "TrainingData" if labelled else "ValidationData", name)
        os.makedirs(case_dir, exist_ok=True)
        for channel, suffix in enumerate(MODALITY_SUFFIXES):
            nib.save(nib.Nifti1Image(case.image[..., channel], case.affine), os.path.join(case_dir, f"{name}_{suffix}.nii.gz"))
        if labelled:
            nib.save(nib.Nifti1Image(label, case.affine), os.path.join(case_dir, f"{name}_seg.nii.gz"))
    if layout == "decathlon":
        header = {
            "name": "BRATS (synthetic)",
            "description": f"Synthetic brain tumour volumes in the Decathlon Task01 layout, seed {seed}",
            "tensorImageSize": "4D",
            "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
            "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        }
        write_dataset_json(out_dir, header, training, test)
    return out_dir
