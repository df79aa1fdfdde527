"""The sweep's data: every labelled volume pre-processed once by the bundle's own ``volume_transforms`` and cached -
the same tensors the bundle's ``CacheDataset`` holds before its random transforms."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from tqdm import tqdm

import jnet.data.io
import jnet.data.layouts
import jnet.processing
import jnet.transforms
from jnet.bundles.parse import bundle_parser
from jnet.data.datalists import labelled_datalist
from jnet.errors import InputError

__all__ = ["SweepData", "load_sweep_data", "NUM_FOLDS"]

NUM_FOLDS = 4  # fold 0 of NUM_FOLDS is held out


@dataclass
class SweepData:
    """The output of the bundle's ``volume_transforms`` per volume: ``{"image": (C, 256, 256, D) float32,
    "label": (L, 256, 256, D)}`` MetaTensors with their affine, for the training fold and the held-out fold, and the
    datalists (file names) they came from."""

    train_volumes: list[dict]
    val_volumes: list[dict]
    train_datalist: list[dict]
    val_datalist: list[dict]
    num_classes: int
    multilabel: bool  # sigmoid channels (BraTS regions, the paper's binary gland) rather than softmax classes

    @property
    def val_names(self) -> list[str]:
        return [str(item["label"]) for item in self.val_datalist]

    @property
    def in_channels(self) -> int:
        return int(self.train_volumes[0]["image"].shape[0])

    @property
    def train_slices(self) -> int:
        return sum(int(volume["image"].shape[-1]) for volume in self.train_volumes)


def _plain(volume: dict) -> dict:
    """A volume as plain tensors (no MetaTensor), so the cache loads with ``weights_only=True``."""
    image, label = volume["image"], volume["label"]
    return {"image": image.as_tensor(), "label": label.as_tensor(), "affine": torch.as_tensor(image.affine)}


def _meta(volume: dict) -> dict:
    return {key: MetaTensor(volume[key], affine=volume["affine"].clone()) for key in ("image", "label")}


def _processing_files() -> list[str]:
    """The code that makes the cached volumes: jnet/processing/, the transforms and the data loading (reader, checks,
    layouts)."""
    folders = [os.path.dirname(module.__file__) for module in (jnet.processing, jnet.transforms, jnet.data.io, jnet.data.layouts)]
    return [os.path.join(folder, name) for folder in folders for name in sorted(os.listdir(folder)) if name.endswith(".py")]


def cache_key(bundle_dir: str, config_files: Sequence[str], dataset_dir: str, layout: str, num_folds: int, val_fold: int) -> str:
    """What the cached volumes depend on: the data (folder, layout, folds), the bundle's train.json and the setting's
    override files, and the code that loads and pre-processes them (jnet/processing/, jnet/transforms/, jnet/data/io/
    and jnet/data/layouts/)."""
    digest = hashlib.sha256(json.dumps([os.path.abspath(dataset_dir), layout, num_folds, val_fold]).encode())
    files = (os.path.join(bundle_dir, "configs", "train.json"), *config_files, *_processing_files())
    for path in files:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _same_volumes(cached: dict, fresh: dict) -> bool:
    """Whether two caches hold the same volumes, tensor for tensor (images, labels, affines), and the same lists."""
    for part in ("train_volumes", "val_volumes"):
        if len(cached[part]) != len(fresh[part]):
            return False
        for old, new in zip(cached[part], fresh[part]):
            for k in ("image", "label", "affine"):
                if old[k].shape != new[k].shape or old[k].dtype != new[k].dtype or not torch.equal(old[k], new[k]):
                    return False

    def names(content: dict) -> list[str]:
        return [os.path.basename(str(item["label"])) for part in ("train_datalist", "val_datalist") for item in content[part]]

    return names(cached) == names(fresh) and all(cached[k] == fresh[k] for k in ("num_classes", "multilabel"))


def _as_sweep_data(content: dict) -> SweepData:
    content = dict(content)
    content["train_volumes"] = [_meta(v) for v in content["train_volumes"]]
    content["val_volumes"] = [_meta(v) for v in content["val_volumes"]]
    return SweepData(**content)


def load_sweep_data(
    bundle_dir: str,
    dataset_dir: str,
    cache_file: str,
    config_files: Sequence[str] = (),
    num_folds: int = NUM_FOLDS,
    val_fold: int = 0,
    dataset_layout: str | None = None,
    revalidate: bool = False,
) -> SweepData:
    """Pre-process the labelled volumes of ``dataset_dir`` with the ``volume_transforms`` of the bundle's train.json
    merged with ``config_files`` (loading, checks, label mapping, orientation, normalisation, square padding, the
    256 grid) once; later calls read ``cache_file``, and refuse it (:class:`~jnet.errors.InputError`) when it was
    made from other data, configs or pre-processing code - unless ``revalidate``: then the volumes are made again
    and the cache is kept (under the new key) only if they are the cached ones, tensor for tensor (a code or
    config change that does not touch the volumes, or the same data regenerated in another folder)."""
    parser = bundle_parser(bundle_dir, config_files)
    layout = dataset_layout or parser["dataset_layout"]
    key = cache_key(bundle_dir, config_files, dataset_dir, layout, num_folds, val_fold)
    cached = torch.load(cache_file, weights_only=True) if os.path.isfile(cache_file) else None
    if cached is not None and cached.pop("cache_key", None) == key:
        return _as_sweep_data(cached)
    if cached is not None and not revalidate:
        raise InputError(
            f"{cache_file}: volumes cached from other data, another train.json or an older pre-processing; the runs "
            "beside it were trained on them - use a new --work_dir (or delete this folder's runs and cache), or "
            "--revalidate_cache True to keep them if the volumes made now are the cached ones, tensor for tensor."
        )
    parser["dataset_layout"] = layout
    transform = Compose(parser.get_parsed_content("volume_transforms"))
    in_channels = parser.get_parsed_content("in_channels")
    datalists = {part: labelled_datalist(dataset_dir, layout, part, num_folds, val_fold, 0, in_channels) for part in ("train", "val")}
    volumes = {
        part: [_plain(transform(item)) for item in tqdm(items, desc=f"caching {part} volumes")] for part, items in datalists.items()
    }
    content = {
        "train_volumes": volumes["train"],
        "val_volumes": volumes["val"],
        "train_datalist": datalists["train"],
        "val_datalist": datalists["val"],
        "num_classes": int(parser.get_parsed_content("num_classes")),
        "multilabel": parser.get_parsed_content("post_activation").activation == "sigmoid",
    }
    if cached is not None:
        if not _same_volumes(cached, content):
            raise InputError(
                f"{cache_file}: the volumes made now from {dataset_dir} differ from the cached ones the runs beside it "
                "were trained on - use a new --work_dir."
            )
        print(f"{cache_file}: re-validated - the volumes made now are the cached ones, tensor for tensor; kept under the new key", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
    torch.save({**content, "cache_key": key}, cache_file + ".tmp")
    os.replace(cache_file + ".tmp", cache_file)
    return _as_sweep_data(content)
