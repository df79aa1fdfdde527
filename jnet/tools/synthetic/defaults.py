"""Synthetic datasets of each bundle family: one writer for the CLI, the sweep and eval_metrics."""

from __future__ import annotations

import os

from jnet.errors import InputError

from .anatomy import DEFAULT_TEMPLATES_DIR, write_anatomy_task
from .brats import write_brats_task
from .prostate import write_prostate_task

__all__ = ["DATASETS", "write_synthetic", "synthetic_dataset"]

DATASETS = ("prostate", "brats", "anatomy")
SMALL_SIZES = {
    "prostate": {"slice_sizes": ((128, 128), (160, 128)), "num_slices": (6, 8)},
    "brats": {"size": (96, 96), "num_slices": (6, 8)},
    "anatomy": {"size_range": (96, 128), "num_slices": (6, 8)},
}


def write_synthetic(
    dataset: str,
    out_dir: str,
    layout: str = "decathlon",
    num_train: int = 16,
    num_test: int = 2,
    seed: int = 0,
    small: bool = False,
    templates_dir: str = DEFAULT_TEMPLATES_DIR,
) -> str:
    """Write a synthetic ``dataset`` (prostate: Decathlon Task05; brats: ``layout`` decathlon or brats2021;
    anatomy: real Colin27 anatomy from ``templates_dir`` in the Task05 layout) to ``out_dir``; ``small``: small
    slices and few of them, for quick tries. Returns ``out_dir``."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    size = SMALL_SIZES[dataset] if small else {}
    if dataset == "anatomy" and layout != "decathlon":
        raise InputError(f"the anatomy dataset is written in the decathlon layout only, got --layout {layout}.")
    if dataset == "prostate":
        write_prostate_task(out_dir, num_train=num_train, num_test=num_test, seed=seed, **size)
    elif dataset == "anatomy":
        write_anatomy_task(out_dir, num_train=num_train, num_test=num_test, seed=seed, templates_dir=templates_dir, **size)
    else:
        write_brats_task(out_dir, layout, num_train=num_train, num_test=num_test, seed=seed, **size)
    return out_dir


def synthetic_dataset(dataset: str, out_dir: str, num_train: int = 16, num_test: int = 2, seed: int = 0, small: bool = False) -> str:
    """The Decathlon-layout synthetic ``dataset`` in ``out_dir``, written only if it is not there yet."""
    if not os.path.isfile(os.path.join(out_dir, "dataset.json")):
        write_synthetic(dataset, out_dir, "decathlon", num_train, num_test, seed, small)
    return out_dir
