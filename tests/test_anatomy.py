"""The real-anatomy dataset writer (Colin27 + AAL from Debian's mricron-data) in the Decathlon Task05 layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from jnet.data.datalists import labelled_datalist
from jnet.errors import InputError
from jnet.tools.synthetic.anatomy import (
    DEFAULT_TEMPLATES_DIR,
    LABELS,
    MODALITIES,
    load_anatomy_templates,
    make_anatomy_case,
    write_anatomy_task,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"size_range": (96, 128), "num_slices": (6, 8)}
NUM_TRAIN, NUM_TEST, SEED = 3, 1, 5

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEFAULT_TEMPLATES_DIR, "aal.nii.gz")),
    reason=f"the Colin27/AAL templates are not installed ({DEFAULT_TEMPLATES_DIR}/aal.nii.gz; apt-get install mricron-data)",
)


@pytest.fixture(scope="module")
def anatomy_dataset(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("Task05_anatomy"))
    write_anatomy_task(out, num_train=NUM_TRAIN, num_test=NUM_TEST, seed=SEED, **SMALL)
    return out


def _arrays(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def test_anatomy_dataset_has_the_decathlon_layout(anatomy_dataset):
    with open(os.path.join(anatomy_dataset, "dataset.json")) as f:
        content = json.load(f)
    assert content["labels"] == LABELS == {"0": "background", "1": "insula", "2": "striatum"}
    assert content["modality"] == MODALITIES and len(content["modality"]) == 2
    assert content["tensorImageSize"] == "4D"
    assert (content["numTraining"], content["numTest"]) == (NUM_TRAIN, NUM_TEST)
    names = [f"prostate_{i:02d}.nii.gz" for i in range(NUM_TRAIN)]
    assert content["training"] == [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in names]
    assert content["test"] == [f"./imagesTs/prostate_{NUM_TRAIN + i:02d}.nii.gz" for i in range(NUM_TEST)]
    for name in content["test"]:
        assert os.path.isfile(os.path.join(anatomy_dataset, name))


def test_anatomy_cases_are_real_volumes_with_both_structures(anatomy_dataset):
    templates = load_anatomy_templates()
    for index in range(NUM_TRAIN):
        name = f"prostate_{index:02d}.nii.gz"
        image = nib.load(os.path.join(anatomy_dataset, "imagesTr", name))
        label = nib.load(os.path.join(anatomy_dataset, "labelsTr", name))
        data, classes = np.asanyarray(image.dataobj), np.asanyarray(label.dataobj)
        assert image.ndim == 4 and image.shape[3] == 2 and image.get_data_dtype() == np.float32
        assert label.shape == image.shape[:3] and label.get_data_dtype() == np.uint8
        assert all(96 <= n <= 128 for n in image.shape[:2]) and 6 <= image.shape[2] <= 8
        assert np.isfinite(data).all() and data.min() >= 0 and (data.reshape(-1, 2).std(0) > 0).all()
        assert set(np.unique(classes)) == {0, 1, 2}
        # the affine saved is the one the case was made with: axial, L-P-S voxel axes, 2-3 mm slices
        intended = make_anatomy_case(np.random.default_rng([SEED, index]), templates, **SMALL).affine
        np.testing.assert_allclose(image.affine, intended, atol=1e-4)  # NIfTI stores float32
        np.testing.assert_array_equal(label.affine, image.affine)
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        sx, sy, sz = image.header.get_zooms()[:3]
        assert sx == pytest.approx(sy) and 180 <= sx * max(image.shape[:2]) <= 220 and 2.0 <= sz <= 3.0
        # the striatum (caudate + putamen) is the larger structure, as in the atlas
        assert 0 < (classes == 1).sum() < (classes == 2).sum()


def test_anatomy_cases_differ_and_the_seed_reproduces_them(anatomy_dataset, tmp_path):
    images = [_arrays(os.path.join(anatomy_dataset, "imagesTr", f"prostate_{i:02d}.nii.gz")) for i in range(NUM_TRAIN)]
    labels = [_arrays(os.path.join(anatomy_dataset, "labelsTr", f"prostate_{i:02d}.nii.gz")) for i in range(NUM_TRAIN)]
    for i in range(NUM_TRAIN):
        for j in range(i + 1, NUM_TRAIN):
            assert images[i].shape != images[j].shape or not np.array_equal(images[i], images[j])
            assert labels[i].shape != labels[j].shape or not np.array_equal(labels[i], labels[j])
    again = str(tmp_path / "again")
    write_anatomy_task(again, num_train=1, num_test=0, seed=SEED, **SMALL)  # case 0 depends only on (seed, 0)
    for sub in ("imagesTr", "labelsTr"):
        first, second = (_arrays(os.path.join(d, sub, "prostate_00.nii.gz")) for d in (anatomy_dataset, again))
        assert first.dtype == second.dtype and first.tobytes() == second.tobytes()
    other = str(tmp_path / "other_seed")
    write_anatomy_task(other, num_train=1, num_test=0, seed=SEED + 1, **SMALL)
    assert not np.array_equal(_arrays(os.path.join(other, "labelsTr", "prostate_00.nii.gz")), labels[0])


def test_the_real_datalist_reads_the_anatomy_dataset(anatomy_dataset):
    train = labelled_datalist(anatomy_dataset, "decathlon", "train", 3, 0, 0, 2)
    val = labelled_datalist(anatomy_dataset, "decathlon", "val", 3, 0, 0, 2)
    assert len(train) + len(val) == NUM_TRAIN and train and val
    for item in train + val:
        assert os.path.isfile(item["image"]) and os.path.isfile(item["label"])


def test_missing_templates_are_one_clear_input_error(tmp_path):
    with pytest.raises(InputError, match=r"ch2better\.nii\.gz not found.*mricron-data"):
        write_anatomy_task(str(tmp_path / "out"), templates_dir=str(tmp_path / "no_templates"))
    assert not (tmp_path / "out").exists()


def test_the_synthetic_verb_writes_the_anatomy_dataset(tmp_path):
    out = str(tmp_path / "cli")
    command = [sys.executable, "-m", "jnet", "synthetic", "--dataset", "anatomy", "--out_dir", out, "--small"]
    command += ["--num_train", "1", "--num_test", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert labelled_datalist(out, "decathlon", "all", in_channels=2)
    command += ["--templates_dir", str(tmp_path / "none")]
    missing = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode != 0 and "ch2better.nii.gz not found" in missing.stderr
