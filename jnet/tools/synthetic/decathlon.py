"""Writing one case and the ``dataset.json`` of a Medical Segmentation Decathlon task folder (``imagesTr``,
``labelsTr``, ``imagesTs``): shared by every dataset writer."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np

__all__ = ["save_decathlon_case", "write_dataset_json"]


def save_decathlon_case(out_dir: str, name: str, image: np.ndarray, affine: np.ndarray, label: np.ndarray | None = None):
    """Save ``image`` (and ``label``, on the same affine) as ``imagesTr/<name>`` + ``labelsTr/<name>``, or
    ``imagesTs/<name>`` when unlabelled; return the case's ``dataset.json`` entry (a dict, or the image path)."""
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    folder = "imagesTr" if label is not None else "imagesTs"
    nib.save(nib.Nifti1Image(image, affine), os.path.join(out_dir, folder, name))
    if label is None:
        return f"./imagesTs/{name}"
    nib.save(nib.Nifti1Image(label, affine), os.path.join(out_dir, "labelsTr", name))
    return {"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"}


def write_dataset_json(out_dir: str, header: dict, training: list[dict], test: list[str]) -> str:
    """Write ``dataset.json``: ``header`` (name, description, modality, labels, ...) then the case counts and lists;
    return its path."""
    description = {**header, "numTraining": len(training), "numTest": len(test), "training": training, "test": test}
    path = os.path.join(out_dir, "dataset.json")
    with open(path, "w") as f:
        json.dump(description, f, indent=4)
    return path
