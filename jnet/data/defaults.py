"""The synthetic default dataset of each bundle family, written once and reused."""

from __future__ import annotations

import os

from .synthetic import write_prostate_task
from .synthetic_brats import write_brats_task

__all__ = ["DATASETS", "synthetic_dataset"]

DATASETS = ("prostate", "brats")


def synthetic_dataset(dataset: str, out_dir: str, num_train: int = 16, num_test: int = 2, seed: int = 0, small: bool = False) -> str:
    """Write (unless already there) a synthetic ``dataset`` in its Decathlon layout and return its folder."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    if not os.path.isfile(os.path.join(out_dir, "dataset.json")):
        if dataset == "prostate":
            size = {"slice_sizes": ((128, 128), (160, 128)), "num_slices": (6, 8)} if small else {}
            write_prostate_task(out_dir, num_train=num_train, num_test=num_test, seed=seed, **size)
        else:
            size = {"size": (96, 96), "num_slices": (6, 8)} if small else {}
            write_brats_task(out_dir, "decathlon", num_train=num_train, num_test=num_test, seed=seed, **size)
    return out_dir
