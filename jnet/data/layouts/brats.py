"""BraTS brain-tumour data: the two public layouts, their label codes, and MONAI's TC / WT / ET regions.

- ``"decathlon"``: Medical Segmentation Decathlon Task01_BrainTumour - ``dataset.json``, 4D images
  (FLAIR, T1w, T1gd, T2w), labels 1 edema, 2 non-enhancing tumour, 3 enhancing tumour.
- ``"brats2021"``: BraTS 2018-2021 case folders - ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``, labels 1
  necrotic / non-enhancing core, 2 edema, 4 enhancing tumour.

Regions (MONAI's convention, overlapping sigmoid channels): tumour core TC, whole tumour WT, enhancing tumour ET.
MONAI's ``ConvertToMultiChannelBasedOnBratsClasses`` hard-codes the BraTS 2018-21 codes (and has differed across
MONAI versions), so the mapping lives here, one table per layout.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np
import torch

from jnet.errors import InputError

from ..io.checks import check_case_headers, check_pair_headers

__all__ = [
    "BratsLayout",
    "LAYOUTS",
    "brats_label_names",
    "MODALITY_SUFFIXES",
    "labels_to_regions",
    "brats_case_datalist",
    "brats_layout",
    "brats_case",
    "brats_case_dirs",
]

MODALITY_SUFFIXES = ("flair", "t1", "t1ce", "t2")  # channel order of every BraTS bundle


@dataclass(frozen=True)
class BratsLayout:
    edema: int
    core: int  # necrotic / non-enhancing tumour core
    enhancing: int

    @property
    def label_values(self) -> tuple[int, ...]:
        return tuple(sorted((0, self.edema, self.core, self.enhancing)))


LAYOUTS = {"decathlon": BratsLayout(edema=1, core=2, enhancing=3), "brats2021": BratsLayout(edema=2, core=1, enhancing=4)}


def brats_label_names(name: str) -> dict[str, str]:
    """``{code: name}`` of the label codes the layout ``name`` writes (the names of a DICOM SEG's segments)."""
    layout = brats_layout(name)
    return {str(layout.core): "tumour core (necrotic / non-enhancing)", str(layout.edema): "edema", str(layout.enhancing): "enhancing tumour"}


def brats_layout(name: str) -> BratsLayout:
    """The label codes of the BraTS layout ``name``; an :class:`InputError` naming the known ones otherwise."""
    if name not in LAYOUTS:
        raise InputError(f"unknown BraTS layout '{name}'; use one of {sorted(LAYOUTS)}.")
    return LAYOUTS[name]


def labels_to_regions(label: torch.Tensor | np.ndarray, layout: str) -> torch.Tensor:
    """``(1, ...)`` label codes -> ``(3, ...)`` float regions TC, WT, ET."""
    codes = brats_layout(layout)
    label = torch.as_tensor(label)[0]
    tc = (label == codes.core) | (label == codes.enhancing)
    wt = tc | (label == codes.edema)
    et = label == codes.enhancing
    return torch.stack([tc, wt, et]).float()


def _case_files(case_dir: str) -> dict[str, str]:
    case = os.path.basename(os.path.normpath(case_dir))
    files = {}
    for suffix in MODALITY_SUFFIXES + ("seg",):
        matches = [p for p in glob.glob(os.path.join(case_dir, f"*_{suffix}.nii*"))]
        if len(matches) == 1:
            files[suffix] = matches[0]
        elif len(matches) > 1:
            raise InputError(f"{case_dir}: case {case} has {len(matches)} files for '{suffix}': {sorted(matches)}.")
    return files


def brats_case_dirs(dataset_dir: str) -> list[str]:
    """The case folders of a BraTS 2018-2021 layout; errors for a missing folder, mixed layouts or no cases."""
    if not dataset_dir or not os.path.isdir(dataset_dir):
        raise InputError(f"dataset_dir '{dataset_dir}' does not exist or is not a folder (set --dataset_dir).")
    cases = sorted(d for d in glob.glob(os.path.join(dataset_dir, "*")) if os.path.isdir(d))
    if os.path.isfile(os.path.join(dataset_dir, "dataset.json")):
        if any(_case_files(case) for case in cases):
            raise InputError(
                f"{dataset_dir}: mixed layouts - a Decathlon dataset.json next to BraTS case folders; "
                "set dataset_layout to 'decathlon' or remove one of them."
            )
        raise InputError(f"{dataset_dir}: a Decathlon dataset (dataset.json), not BraTS case folders: set --dataset_layout decathlon.")
    if not cases:
        raise InputError(f"{dataset_dir}: no BraTS case folders (expected <case>/<case>_flair.nii.gz, ...).")
    if not any(_case_files(case) for case in cases):  # e.g. BraTS2021/ holding TrainingData/, or HGG/ + LGG/
        inner = [case for case in cases if any(_case_files(d) for d in glob.glob(os.path.join(case, "*")) if os.path.isdir(d))]
        if inner:
            raise InputError(
                f"{dataset_dir}: holds folders of cases ({', '.join(os.path.basename(c) for c in inner)}), not cases: "
                "point --dataset_dir at the folder whose sub-folders are the cases (e.g. BraTS2021/TrainingData; "
                "put BraTS 2018/2019's HGG and LGG cases into one folder)."
            )
    return cases


def brats_case(case_dir: str, labelled: bool = True) -> dict:
    """One BraTS 2018-2021 case folder as ``{"image": [flair, t1, t1ce, t2], "label": seg}`` (``labelled=False``:
    no label), its headers checked; errors name the case or the file."""
    files = _case_files(case_dir)
    missing = [s for s in MODALITY_SUFFIXES if s not in files]
    if missing:
        raise InputError(f"{case_dir}: case misses modality file(s) {', '.join(f'*_{m}.nii.gz' for m in missing)}.")
    images = [files[s] for s in MODALITY_SUFFIXES]
    if not labelled:
        check_case_headers(images, len(images))
        return {"image": images}
    if "seg" not in files:
        raise InputError(f"{case_dir}: case has no segmentation (*_seg.nii.gz).")
    check_pair_headers(images, files["seg"], len(images))
    return {"image": images, "label": files["seg"]}


def brats_case_datalist(dataset_dir: str, labelled: bool = True) -> list[dict]:
    """
    Every case folder of a BraTS 2018-2021 layout: ``[{"image": [flair, t1, t1ce, t2], "label": seg}, ...]``
    (``labelled=False``: every case with its four modalities, no label). Errors name the case: a missing
    modality, a missing segmentation, a Decathlon ``dataset.json`` in the same folder (mixed layouts).
    """
    return [brats_case(case_dir, labelled) for case_dir in brats_case_dirs(dataset_dir)]
