"""The sweep's data: every volume pre-processed once by a bundle's own ``volume_transforms`` and cached."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from tqdm import tqdm

import jnet.processing
from jnet.bundles.parse import bundle_parser
from jnet.data.datalists import labelled_datalist
from jnet.errors import InputError
from jnet.transforms import pipeline

__all__ = ["SweepData", "load_sweep_data", "NUM_FOLDS"]

NUM_FOLDS = 4  # fold 0 of NUM_FOLDS is held out


@dataclass
class SweepData:
    """Training slices and held-out volumes on the 256x256 grid (images z-normalised per volume)."""

    train_images: torch.Tensor  # (N, C, 256, 256) float16
    train_labels: torch.Tensor  # (N, L, 256, 256) uint8: class codes (L=1) or region channels (L=3)
    val_images: list[torch.Tensor]  # per volume (D, C, 256, 256) float16
    val_labels: list[torch.Tensor]  # per volume (D, L, 256, 256) uint8
    val_names: list[str]
    num_classes: int
    multilabel: bool  # sigmoid regions (BraTS) rather than softmax classes


def _plain(array: torch.Tensor) -> torch.Tensor:
    """A plain tensor (no MetaTensor), so the cache loads with ``weights_only=True``."""
    return array.as_tensor() if isinstance(array, MetaTensor) else torch.as_tensor(array)


def _volume_slices(item: dict, transform: Compose) -> tuple[torch.Tensor, torch.Tensor]:
    data = transform(item)
    image = _plain(data["image"]).permute(3, 0, 1, 2).half()  # (D, C, H, W)
    label = _plain(data["label"]).permute(3, 0, 1, 2).to(torch.uint8)
    return image, label


def _processing_files() -> list[str]:
    folder = os.path.dirname(jnet.processing.__file__)
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(".py")]


def cache_key(bundle_dir: str, dataset_dir: str, layout: str, num_folds: int, val_fold: int) -> str:
    """What the cached slices depend on: the data (folder, layout, folds), the bundle's train.json and the code of
    the pre-processing steps (jnet/transforms/pipeline.py and the numpy functions of jnet/processing/ they call)."""
    digest = hashlib.sha256(json.dumps([os.path.abspath(dataset_dir), layout, num_folds, val_fold]).encode())
    for path in (os.path.join(bundle_dir, "configs", "train.json"), pipeline.__file__, *_processing_files()):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _cached(cache_file: str, key: str) -> SweepData:
    content = torch.load(cache_file, weights_only=True)
    if content.pop("cache_key", None) != key:
        raise InputError(
            f"{cache_file}: slices cached from other data, another train.json or an older pre-processing; the runs "
            "beside it were trained on them - use a new --work_dir (or delete this folder's runs and cache)."
        )
    return SweepData(**content)


def load_sweep_data(
    bundle_dir: str,
    dataset_dir: str,
    cache_file: str,
    num_folds: int = NUM_FOLDS,
    val_fold: int = 0,
    dataset_layout: str | None = None,
) -> SweepData:
    """Pre-process the labelled volumes of ``dataset_dir`` with the bundle's ``volume_transforms`` (loading,
    checks, orientation, normalisation, square padding, the 256 grid) once; later calls read ``cache_file``, and
    refuse it (:class:`~jnet.errors.InputError`) when it was made from other data or pre-processing code."""
    parser = bundle_parser(bundle_dir)
    layout = dataset_layout or parser["dataset_layout"]
    key = cache_key(bundle_dir, dataset_dir, layout, num_folds, val_fold)
    if os.path.isfile(cache_file):
        return _cached(cache_file, key)
    parser["dataset_layout"] = layout
    transform = Compose(parser.get_parsed_content("volume_transforms"))
    in_channels = parser.get_parsed_content("in_channels")
    train_items = labelled_datalist(dataset_dir, layout, "train", num_folds, val_fold, 0, in_channels)
    val_items = labelled_datalist(dataset_dir, layout, "val", num_folds, val_fold, 0, in_channels)
    train_images, train_labels = [], []
    for item in tqdm(train_items, desc="caching training volumes"):
        image, label = _volume_slices(item, transform)
        train_images.append(image)
        train_labels.append(label)
    val_images, val_labels = [], []
    for item in tqdm(val_items, desc="caching held-out volumes"):
        image, label = _volume_slices(item, transform)
        val_images.append(image)
        val_labels.append(label)
    content = {
        "train_images": torch.cat(train_images),
        "train_labels": torch.cat(train_labels),
        "val_images": val_images,
        "val_labels": val_labels,
        "val_names": [str(item["label"]) for item in val_items],
        "num_classes": int(parser["num_classes"]),
        "multilabel": parser["post_activation"].get("activation") == "sigmoid",
    }
    os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
    torch.save({**content, "cache_key": key}, cache_file + ".tmp")
    os.replace(cache_file + ".tmp", cache_file)
    return SweepData(**content)
