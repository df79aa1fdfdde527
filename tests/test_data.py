import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from jnet.data import decathlon_datalist, image_datalist, split_folds
from jnet.tools.synthetic import write_prostate_task
from jnet.tools.synthetic.prostate import make_prostate_case
from jnet.errors import InputError


def test_synthetic_dataset_has_the_decathlon_layout(tiny_dataset):
    with open(os.path.join(tiny_dataset, "dataset.json")) as f:
        content = json.load(f)
    assert content["labels"] == {"0": "background", "1": "PZ", "2": "TZ"}
    assert content["modality"] == {"0": "T2", "1": "ADC"}
    assert len(content["training"]) == 6 and len(content["test"]) == 1
    item = content["training"][0]
    image = nib.load(os.path.join(tiny_dataset, item["image"]))
    label = nib.load(os.path.join(tiny_dataset, item["label"]))
    assert image.ndim == 4 and image.shape[3] == 2 and image.get_data_dtype() == np.float32
    assert label.shape == image.shape[:3] and label.get_data_dtype() == np.uint8
    np.testing.assert_allclose(label.affine, image.affine)
    assert set(np.unique(np.asarray(label.dataobj))) == {0, 1, 2}
    spacing = image.header.get_zooms()[:3]
    assert 0.4 < spacing[0] < 0.8 and 2.5 < spacing[2] < 4.5


def test_synthetic_cases_are_deterministic_and_anatomically_plausible():
    a = make_prostate_case(np.random.default_rng([7, 0]))
    b = make_prostate_case(np.random.default_rng([7, 0]))
    c = make_prostate_case(np.random.default_rng([7, 1]))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)
    # the peripheral zone is a crescent hugging the transition zone, smaller than it
    assert 0 < (a.label == 1).sum() < (a.label == 2).sum()
    tz = a.label == 2
    grown = tz.copy()
    grown[1:] |= tz[:-1]
    grown[:-1] |= tz[1:]
    grown[:, 1:] |= tz[:, :-1]
    grown[:, :-1] |= tz[:, 1:]
    assert ((a.label == 1) & grown).any()
    # in T2 the peripheral zone is brighter than the transition zone
    t2 = a.image[..., 0]
    assert t2[a.label == 1].mean() > t2[a.label == 2].mean()


def test_fold_split_is_seeded_disjoint_and_complete(tiny_dataset):
    train = decathlon_datalist(tiny_dataset, "train", num_folds=3, val_fold=1, in_channels=2)
    val = decathlon_datalist(tiny_dataset, "val", num_folds=3, val_fold=1, in_channels=2)
    assert len(val) == 2 and len(train) == 4
    assert not {d["image"] for d in train} & {d["image"] for d in val}
    assert decathlon_datalist(tiny_dataset, "val", num_folds=3, val_fold=1) == val  # deterministic
    every = decathlon_datalist(tiny_dataset, "val", num_folds=3, val_fold=-1)
    assert len(every) == 6
    folds = [decathlon_datalist(tiny_dataset, "val", num_folds=3, val_fold=k) for k in range(3)]
    assert sorted(d["image"] for fold in folds for d in fold) == sorted(d["image"] for d in every)
    for item in train:
        assert os.path.isabs(item["image"]) and os.path.isfile(item["label"])


def test_split_folds_refuses_bad_fold():
    with pytest.raises(InputError, match="val_fold"):
        split_folds([{"image": str(i)} for i in range(5)], 5, 5)


@pytest.fixture()
def dataset_copy(tiny_dataset, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(tiny_dataset, out)
    return out


def _rewrite_json(path, change):
    with open(os.path.join(path, "dataset.json")) as f:
        content = json.load(f)
    change(content)
    with open(os.path.join(path, "dataset.json"), "w") as f:
        json.dump(content, f)


def test_missing_dataset_dir_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        decathlon_datalist(str(tmp_path / "nowhere"))


def test_missing_or_broken_dataset_json_is_named(dataset_copy):
    path = os.path.join(dataset_copy, "dataset.json")
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(InputError, match="not valid JSON") as info:
        decathlon_datalist(dataset_copy)
    assert path in str(info.value)
    os.remove(path)
    with pytest.raises(InputError, match="no dataset.json"):
        decathlon_datalist(dataset_copy)


def test_dataset_json_without_training_is_named(dataset_copy):
    _rewrite_json(dataset_copy, lambda c: c.pop("training"))
    with pytest.raises(InputError, match="no 'training' list"):
        decathlon_datalist(dataset_copy)


def test_missing_listed_file_is_named(dataset_copy):
    os.remove(os.path.join(dataset_copy, "labelsTr", "prostate_02.nii.gz"))
    with pytest.raises(InputError, match=r"prostate_02\.nii\.gz: file does not exist \(listed in .*dataset\.json\)"):
        decathlon_datalist(dataset_copy, in_channels=2)


def test_wrong_channel_count_is_named(dataset_copy):
    path = os.path.join(dataset_copy, "imagesTr", "prostate_01.nii.gz")
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., :1], image.affine), path)
    with pytest.raises(InputError, match=r"prostate_01\.nii\.gz: image has 1 channels .* expects 2"):
        decathlon_datalist(dataset_copy, in_channels=2)


def test_label_shape_mismatch_is_named(dataset_copy):
    path = os.path.join(dataset_copy, "labelsTr", "prostate_00.nii.gz")
    label = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj)[:-2], label.affine), path)
    with pytest.raises(InputError, match=r"prostate_00\.nii\.gz: label shape .* differs"):
        decathlon_datalist(dataset_copy, in_channels=2)


def test_image_datalist_globs_and_checks(tiny_dataset, tmp_path):
    items = image_datalist(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz"), in_channels=2)
    assert len(items) == 1
    with pytest.raises(InputError, match="no input images"):
        image_datalist(str(tmp_path / "*.nii.gz"))
    with pytest.raises(InputError, match="expects 4"):
        image_datalist(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz"), in_channels=4)


def test_a_larger_dataset_extends_a_smaller_one(tmp_path):
    small = write_prostate_task(str(tmp_path / "a"), 1, 0, seed=5, slice_sizes=((64, 64),), num_slices=(3, 3))
    large = write_prostate_task(str(tmp_path / "b"), 2, 0, seed=5, slice_sizes=((64, 64),), num_slices=(3, 3))
    a = nib.load(os.path.join(os.path.dirname(small), "imagesTr", "prostate_00.nii.gz")).get_fdata()
    b = nib.load(os.path.join(os.path.dirname(large), "imagesTr", "prostate_00.nii.gz")).get_fdata()
    np.testing.assert_array_equal(a, b)
