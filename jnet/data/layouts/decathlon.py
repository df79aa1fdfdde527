"""Datalists from the Medical Segmentation Decathlon layout (``dataset.json``, ``imagesTr/``, ``labelsTr/``)."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence

from monai.data import partition_dataset

from jnet.errors import InputError

from ..io.checks import case_files, check_case_headers, check_pair_headers

__all__ = ["decathlon_datalist", "image_datalist", "select_split", "split_folds", "read_dataset_json"]

SPLITS = ("train", "val", "all")


def read_dataset_json(dataset_dir: str) -> dict:
    """The parsed ``dataset.json`` of a Decathlon task folder, with clear errors for a missing or broken one."""
    if not dataset_dir or not os.path.isdir(dataset_dir):
        raise InputError(f"dataset_dir '{dataset_dir}' does not exist or is not a folder (set --dataset_dir).")
    path = os.path.join(dataset_dir, "dataset.json")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no dataset.json in the dataset folder (expected the Decathlon layout).")
    try:
        with open(path) as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from e
    training = content.get("training") if isinstance(content, dict) else None
    if not isinstance(training, list) or not training:
        raise InputError(f"{path}: no 'training' list of image/label pairs.")
    for index, item in enumerate(training):
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            raise InputError(f"{path}: training entry {index} is not an object with 'image' and 'label'.")
    return content


def _resolve(dataset_dir: str, relative: str | list[str]) -> str | list[str]:
    """A listed path (or the list of a case's sequence files) relative to the task folder."""
    if isinstance(relative, str):
        return os.path.normpath(os.path.join(dataset_dir, relative))
    return [os.path.normpath(os.path.join(dataset_dir, f)) for f in relative]


def split_folds(items: Sequence[dict], num_folds: int, val_fold: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """
    Seeded k-fold split: ``(train, val)``. ``val_fold=-1`` puts every item in ``val`` (and ``train``), for
    evaluating a model on every labelled case.
    """
    if val_fold == -1:
        return list(items), list(items)
    if not 0 <= val_fold < num_folds:
        raise InputError(f"val_fold must be -1 or in [0, {num_folds - 1}], got {val_fold}.")
    if len(items) < num_folds:
        raise InputError(f"{len(items)} labelled cases cannot be split into {num_folds} folds (set num_folds).")
    folds = partition_dataset(list(items), num_partitions=num_folds, shuffle=True, seed=seed)
    train = [item for k, fold in enumerate(folds) if k != val_fold for item in fold]
    return train, list(folds[val_fold])


def select_split(items: Sequence[dict], split: str, num_folds: int, val_fold: int, seed: int) -> list[dict]:
    """``split`` (``"train"``, ``"val"`` or ``"all"``) of ``items`` under the seeded k-fold assignment."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if split == "all":
        return list(items)
    train, val = split_folds(items, num_folds, val_fold, seed)
    return train if split == "train" else val


def decathlon_datalist(
    dataset_dir: str,
    split: str = "train",
    num_folds: int = 5,
    val_fold: int = 0,
    seed: int = 0,
    in_channels: int | None = None,
) -> list[dict]:
    """
    The labelled volumes of a Decathlon task as ``[{"image": path, "label": path}, ...]`` for one split.

    Every listed file must exist and its NIfTI header must be readable; with ``in_channels`` the image must
    have that many channels (4D ``H x W x D x C``, or 3D when ``in_channels == 1``) and the label must be 3D
    with the image's spatial shape. Errors name the file and the problem.

    Args:
        dataset_dir: the task folder holding ``dataset.json``.
        split: ``"train"``, ``"val"`` (fold ``val_fold``) or ``"all"``.
        num_folds: number of cross-validation folds.
        val_fold: the validation fold; ``-1`` means every labelled case is validation.
        seed: seed of the fold assignment.
        in_channels: expected image channels, checked from the headers when given.
    """
    content = read_dataset_json(dataset_dir)
    json_path = os.path.join(dataset_dir, "dataset.json")
    items = [
        {"image": _resolve(dataset_dir, item["image"]), "label": _resolve(dataset_dir, item["label"])}
        for item in content["training"]
    ]
    for item in items:
        check_pair_headers(item["image"], item["label"], in_channels, listed_in=json_path)
    return select_split(items, split, num_folds, val_fold, seed)


def image_datalist(pattern_or_files: str | Sequence[str], in_channels: int | None = None) -> list[dict]:
    """
    Unlabelled volumes for inference, ``[{"image": path}, ...]``, from a glob pattern (such as
    ``<dataset_dir>/imagesTs/*.nii.gz``) or a list of files; each header is checked like the training images.
    """
    files = sorted(glob.glob(pattern_or_files)) if isinstance(pattern_or_files, str) else list(pattern_or_files)
    if not files:
        raise InputError(f"no input images match '{pattern_or_files}'.")
    for path in files:
        check_case_headers(path, in_channels)
    return [{"image": path if isinstance(path, str) else case_files(path)} for path in files]
