"""Real MR anatomy in the Decathlon Task05_Prostate layout: the Colin27 head of Debian's ``mricron-data`` templates.

What it is: real MRI anatomy and real atlas labels of ONE subject (Colin Holmes' 27-scan average, ``ch2better`` and
``ch2``; labels from the AAL atlas drawn on that subject), cut into prostate-like axial stacks and made into
different cases by a random smooth elastic deformation, a small rotation / scale / translation, a random slab
position, a bias field, an intensity scaling and Rician noise. What it is not: prostate, or more than one subject's
anatomy - it is no substitute for the Decathlon Task05 data, and scores on it say nothing about prostate MRI. It only
gives the prostate bundles (2 channels, labels 0/1/2) real tissue contrast and real structure shapes to train and be
scored on, where :mod:`jnet.tools.synthetic.prostate` draws ellipses.

The files are what the real loading code reads: ``imagesTr/*.nii.gz`` (4D float32, H x W x D x 2), ``labelsTr/*.nii.gz``
(uint8, H x W x D), ``imagesTs/*.nii.gz`` and ``dataset.json``:

- channel 0 ``T1``: ``ch2better.nii.gz`` (0.5 mm, brain-extracted, enhanced grey/white contrast, dark CSF);
- channel 1 ``T1_head``: ``ch2.nii.gz`` (1 mm, the whole head with scalp and skull, lower grey/white contrast). The
  templates hold no second contrast (T2, PD) of Colin27, so the second channel is a second T1-weighted rendering of
  the same subject; in the brain the two correlate at about 0.87, over the head at about 0.44;
- label 1 ``insula``: AAL Insula_L + Insula_R (about 29 ml): a band of cortex curved around the lateral side of
  the putamen, as the peripheral zone curves around the transition zone;
- label 2 ``striatum``: AAL Caudate_L + Caudate_R + Putamen_L + Putamen_R (about 32 ml): compact bodies, as the
  transition zone is. Measured on the 1 mm atlas, the two are about as thick in an axial slice (mean in-plane
  distance to the edge 2.4 mm for the insula, 2.6 mm for the striatum): the insula is the ribbon by its curved,
  elongated shape, not by being thinner.

Every slice is axial (affine ``diag(-s, -s, dz)``, L-P-S voxel axes), in-plane size and spacing vary per case (a
180-220 mm field of view), 2-3 mm slices. The world coordinates of the saved affine are those of the template (MNI
mm) before the case's random deformation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates, zoom

from jnet.errors import InputError

from .decathlon import save_decathlon_case, write_dataset_json

__all__ = ["AnatomyCase", "AnatomyTemplates", "load_anatomy_templates", "make_anatomy_case", "write_anatomy_task"]

DEFAULT_TEMPLATES_DIR = "/usr/share/mricron/templates"
CHANNEL_FILES = ("ch2better.nii.gz", "ch2.nii.gz")
LABEL_FILE, LABEL_NAMES_FILE = "aal.nii.gz", "aal.nii.txt"
MODALITIES = {"0": "T1", "1": "T1_head"}
STRUCTURES = {1: ("Insula_L", "Insula_R"), 2: ("Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R")}
LABELS = {"0": "background", "1": "insula", "2": "striatum"}
DEFAULT_SIZE_RANGE = (200, 320)
DEFAULT_NUM_SLICES = (16, 24)


@dataclass
class AnatomyTemplates:
    channels: tuple[np.ndarray, ...]  # each (X, Y, Z) uint8, on its own grid
    channel_affines: tuple[np.ndarray, ...]  # each (4, 4)
    label: np.ndarray  # (X, Y, Z) uint8 in {0, 1, 2}: the AAL map with STRUCTURES kept
    label_affine: np.ndarray  # (4, 4)
    centre: np.ndarray  # (3,) world mm: the centre of the labelled structures' bounding box


@dataclass
class AnatomyCase:
    image: np.ndarray  # (H, W, D, 2) float32
    label: np.ndarray  # (H, W, D) uint8
    affine: np.ndarray  # (4, 4)


def _template_path(templates_dir: str, name: str) -> str:
    path = os.path.join(templates_dir, name)
    if not os.path.isfile(path):
        raise InputError(
            f"{path} not found: the anatomy dataset needs the Colin27/AAL templates of Debian's mricron-data package "
            f"(apt-get install mricron-data) or --templates_dir pointing at a folder holding {', '.join(CHANNEL_FILES)}, "
            f"{LABEL_FILE} and {LABEL_NAMES_FILE}."
        )
    return path


def _aal_ids(names_path: str) -> dict[str, int]:
    """The AAL label ids by name, from ``aal.nii.txt`` (lines ``<id> <name> <code>``)."""
    ids = {}
    with open(names_path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2 and fields[0].isdigit():
                ids[fields[1]] = int(fields[0])
    return ids


def _label_lookup(names_path: str) -> np.ndarray:
    """A (256,) uint8 table mapping every AAL id to its class in :data:`STRUCTURES` (0 for the rest)."""
    ids = _aal_ids(names_path)
    table = np.zeros(256, np.uint8)
    for value, names in STRUCTURES.items():
        missing = [name for name in names if name not in ids]
        if missing:
            raise InputError(f"{names_path} does not list the AAL structures {', '.join(missing)}.")
        table[[ids[name] for name in names]] = value
    return table


def load_anatomy_templates(templates_dir: str = DEFAULT_TEMPLATES_DIR) -> AnatomyTemplates:
    """Read the two Colin27 T1 images and the AAL map (kept as uint8 on their own grids; resampled per case)."""
    paths = [_template_path(templates_dir, name) for name in (*CHANNEL_FILES, LABEL_FILE, LABEL_NAMES_FILE)]
    images = [nib.load(path) for path in paths[:3]]
    arrays = [np.asarray(image.dataobj, dtype=np.uint8) for image in images]
    label = _label_lookup(paths[3])[arrays[2]]
    voxels = np.argwhere(label > 0)
    corners = np.stack([voxels.min(0), voxels.max(0)]).T  # (3, 2)
    centre = images[2].affine[:3, :3] @ corners.mean(1) + images[2].affine[:3, 3]
    return AnatomyTemplates(
        channels=(arrays[0], arrays[1]),
        channel_affines=(images[0].affine, images[1].affine),
        label=label,
        label_affine=images[2].affine,
        centre=centre,
    )


def _case_grid(
    rng: np.random.Generator, size_range: Sequence[int], num_slices: Sequence[int], centre: np.ndarray
) -> tuple[tuple[int, int, int], np.ndarray]:
    """The case's shape ``(H, W, D)`` and axial affine ``diag(-s, -s, dz)`` (L-P-S voxel axes) centred on ``centre``."""
    height, width = (int(n) for n in rng.integers(size_range[0], size_range[1] + 1, size=2))
    depth = int(rng.integers(num_slices[0], num_slices[1] + 1))
    in_plane = rng.uniform(180.0, 220.0) / max(height, width)
    spacing = np.array([in_plane, in_plane, rng.uniform(2.0, 3.0)])
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array([height, width, depth]) - 1) / 2)
    return (height, width, depth), affine


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """(3, 3) rotation about x, then y, then z by ``angles_deg``."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _upsampling_matrix(n_out: int, n_control: int) -> np.ndarray:
    """(n_out, n_control) cubic-spline weights: ``matrix @ values`` resamples ``n_control`` points to ``n_out``."""
    return zoom(np.eye(n_control), (n_out / n_control, 1), order=3, mode="nearest", grid_mode=False)


def _elastic_displacement(rng: np.random.Generator, shape: tuple[int, int, int], sigma_mm: float) -> np.ndarray:
    """A smooth random displacement (3, H, W, D) in mm: a 5 x 5 x 3 control grid upsampled with cubic splines."""
    control = rng.normal(0.0, sigma_mm, size=(3, 5, 5, 3))
    mx, my, mz = (_upsampling_matrix(n, c) for n, c in zip(shape, control.shape[1:]))
    return np.einsum("ia,jb,kc,nabc->nijk", mx, my, mz, control, optimize=True)


def _template_points(rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """The template world point (3, H, W, D), mm, that each case voxel shows: a random rotation, scale, in-plane
    translation and slab offset about the case centre, plus a smooth elastic displacement."""
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    rotation = _rotation(rng.uniform([-4, -4, -10], [4, 4, 10]))
    scale = rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, size=3)
    shift = np.array([rng.normal(0, 3), rng.normal(0, 3), rng.uniform(-6, 6)])  # the last: the slab position
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = affine[:3, :3] @ grid + affine[:3, 3:]
    points = (rotation * scale) @ (world - centre[:, None]) + (centre + shift)[:, None]
    return points.reshape(3, *shape) + _elastic_displacement(rng, shape, rng.uniform(1.5, 3.0))


def _sample(volume: np.ndarray, volume_affine: np.ndarray, points: np.ndarray, order: int) -> np.ndarray:
    """``volume`` (X, Y, Z) at world ``points`` (3, ...): linear (``order=1``) or nearest (``order=0``); 0 outside."""
    inverse = np.linalg.inv(volume_affine)
    voxels = np.tensordot(inverse[:3, :3], points, axes=1) + inverse[:3, 3].reshape(3, *([1] * (points.ndim - 1)))
    out = np.float32 if order else volume.dtype
    return map_coordinates(volume, voxels, output=out, order=order, mode="constant", cval=0, prefilter=False)


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """(H, W, D) multiplicative bias: exp of a random quadratic polynomial of the normalised coordinates."""
    xn, yn, zn = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij", sparse=True)
    terms = (xn, yn, zn, xn * yn, xn**2, yn**2)
    return np.exp(sum(c * t for c, t in zip(rng.normal(0, 0.15, len(terms)), terms)))


def _acquire(rng: np.random.Generator, tissue: np.ndarray) -> np.ndarray:
    """One channel as a scanner would give it: ``tissue`` (H, W, D, template units, white matter ~110) with a random
    contrast (gamma), bias field, Rician noise and gain."""
    signal = (tissue / 110.0) ** rng.uniform(0.85, 1.15) * _bias_field(rng, tissue.shape)
    sigma = rng.uniform(0.01, 0.04)
    real = signal + sigma * rng.standard_normal(signal.shape)
    imaginary = sigma * rng.standard_normal(signal.shape)
    return (np.sqrt(real**2 + imaginary**2) * rng.uniform(600, 1400)).astype(np.float32)


def make_anatomy_case(
    rng: np.random.Generator,
    templates: AnatomyTemplates,
    size_range: Sequence[int] = DEFAULT_SIZE_RANGE,
    num_slices: Sequence[int] = DEFAULT_NUM_SLICES,
) -> AnatomyCase:
    """One case: an axial stack of ``H x W`` (each in ``size_range``) by ``D`` (in ``num_slices``) voxels around the
    labelled structures, the image (H, W, D, 2) linearly and the label (H, W, D) nearest-neighbour resampled from
    the templates through the same random deformation."""
    shape, affine = _case_grid(rng, size_range, num_slices, templates.centre)
    points = _template_points(rng, shape, affine)
    label = _sample(templates.label, templates.label_affine, points, order=0)
    channels = [
        _acquire(rng, _sample(volume, volume_affine, points, order=1))
        for volume, volume_affine in zip(templates.channels, templates.channel_affines)
    ]
    return AnatomyCase(image=np.stack(channels, axis=-1), label=label, affine=affine)


def write_anatomy_task(
    out_dir: str,
    num_train: int = 16,
    num_test: int = 2,
    seed: int = 0,
    templates_dir: str = DEFAULT_TEMPLATES_DIR,
    size_range: Sequence[int] = DEFAULT_SIZE_RANGE,
    num_slices: Sequence[int] = DEFAULT_NUM_SLICES,
) -> str:
    """
    Write a Task05_Prostate-format dataset of real Colin27 anatomy (see the module docstring) to ``out_dir`` and
    return the path of its ``dataset.json``. Case ``i`` depends only on ``(seed, i)``, so a larger dataset extends a
    smaller one with the same seed. Raises :class:`~jnet.errors.InputError` naming the first template file missing
    from ``templates_dir``.

    Args:
        out_dir: the task folder to write (``imagesTr``, ``labelsTr``, ``imagesTs``, ``dataset.json``).
        num_train: labelled cases (``prostate_00`` ...).
        num_test: unlabelled cases in ``imagesTs``, numbered after the labelled ones.
        seed: the seed of every case's geometry, deformation, intensities and noise.
        templates_dir: the folder holding ``ch2better.nii.gz``, ``ch2.nii.gz``, ``aal.nii.gz`` and ``aal.nii.txt``.
        size_range: the smallest and largest in-plane size (H and W drawn independently).
        num_slices: the fewest and most axial slices.
    """
    templates = load_anatomy_templates(templates_dir)
    training, test = [], []
    for index in range(num_train + num_test):
        case = make_anatomy_case(np.random.default_rng([seed, index]), templates, size_range, num_slices)
        labelled = index < num_train
        entry = save_decathlon_case(out_dir, f"prostate_{index:02d}.nii.gz", case.image, case.affine, case.label if labelled else None)
        (training if labelled else test).append(entry)
    structures = "; ".join(f"{value} = AAL {' + '.join(names)}" for value, names in STRUCTURES.items())
    header = {
        "name": "PROSTATE layout, Colin27 brain anatomy (jnet anatomy)",
        "description": (
            f"Real MR anatomy of ONE subject (Colin27: channel 0 ch2better, channel 1 ch2), randomly deformed per case, "
            f"in the Decathlon Task05 layout; labels {structures}. Not prostate; seed {seed}."
        ),
        "reference": "Holmes et al. 1998 (Colin27); Tzourio-Mazoyer et al. 2002 (AAL); via Debian mricron-data",
        "licence": "as Debian mricron-data ships them (/usr/share/doc/mricron-data/copyright); Colin27 and AAL remain their authors' work",
        "tensorImageSize": "4D",
        "modality": dict(MODALITIES),
        "labels": dict(LABELS),
    }
    return write_dataset_json(out_dir, header, training, test)
