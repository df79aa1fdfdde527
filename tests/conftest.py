"""Session fixtures: one tiny synthetic dataset and one tiny trained bundle, shared by the tests that need them."""

from __future__ import annotations

import os
import subprocess

import pytest

from jnet.tools.bundle_commands import bundle_command

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLES = os.path.join(REPO, "bundles")
BUNDLE_16 = os.path.join(BUNDLES, "prostate_mri_lowres_16")

# tiny and fast: every run of a bundle command in the tests uses these
TINY_OVERRIDES = {
    "num_workers": 0,
    "num_folds": 3,
    "batch_size": 2,
    "slices_per_volume": 2,
    "features": 4,
}


def run_bundle(bundle_dir: str, config_files: list[str], timeout: int = 600, **overrides: object):
    """Run ``python -m monai.bundle run`` as a user types it, from the bundle folder."""
    return subprocess.run(
        bundle_command(config_files, overrides),
        cwd=bundle_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """6 labelled + 1 test volume, 128-160 px slices, 6-8 slices each, in the Decathlon Task05 layout."""
    from jnet.tools.synthetic.prostate import write_prostate_task

    out = str(tmp_path_factory.mktemp("Task05_Prostate_tiny"))
    write_prostate_task(out, num_train=6, num_test=1, seed=3, slice_sizes=((128, 128), (160, 128)), num_slices=(6, 8))
    return out


@pytest.fixture(scope="session")
def trained_root(tiny_dataset, tmp_path_factory) -> str:
    """A bundle root holding models/model.pt from a 1-epoch training of prostate_mri_lowres_16 on tiny data."""
    root = str(tmp_path_factory.mktemp("trained_16"))
    result = run_bundle(BUNDLE_16, ["configs/train.json"], bundle_root=root, dataset_dir=tiny_dataset, epochs=1, **TINY_OVERRIDES)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def tiny_brats_decathlon(tmp_path_factory) -> str:
    """6 labelled + 1 test synthetic BraTS volume (96x96, 6-8 slices) in the Decathlon Task01 layout."""
    from jnet.tools.synthetic.brats import write_brats_task

    return write_brats_task(str(tmp_path_factory.mktemp("Task01_tiny")), "decathlon", 6, 1, seed=2, size=(96, 96), num_slices=(6, 8))


@pytest.fixture(scope="session")
def tiny_brats2021(tmp_path_factory) -> str:
    """The same in the BraTS 2018-2021 case-folder layout (TrainingData/ and ValidationData/)."""
    from jnet.tools.synthetic.brats import write_brats_task

    return write_brats_task(str(tmp_path_factory.mktemp("BraTS2021_tiny")), "brats2021", 6, 1, seed=2, size=(96, 96), num_slices=(6, 8))
