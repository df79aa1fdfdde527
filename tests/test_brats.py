"""BraTS: label-code tables, both layouts' datalists and errors, and the bundle commands on each layout."""

import glob
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import BUNDLES, TINY_OVERRIDES, run_bundle
from jnet.data import brats_case_datalist, labelled_datalist, labels_to_regions
from jnet.errors import InputError
from jnet.transforms import AsLabelsd

BRATS_16 = os.path.join(BUNDLES, "brats_mri_lowres_16")


@pytest.mark.parametrize(
    "layout, codes, expected",
    [
        # Task01: 1 edema, 2 non-enhancing tumour, 3 enhancing -> TC = 2|3, WT = 1|2|3, ET = 3
        ("decathlon", [0, 1, 2, 3], [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]]),
        # BraTS 2018-21: 1 necrotic core, 2 edema, 4 enhancing -> TC = 1|4, WT = 1|2|4, ET = 4
        ("brats2021", [0, 1, 2, 4], [[0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]]),
    ],
)
def test_label_codes_map_to_regions_and_back(layout, codes, expected):
    label = torch.tensor(codes)[None]
    regions = labels_to_regions(label, layout)
    assert regions.tolist() == expected
    assert AsLabelsd("pred", layout=layout)({"pred": regions})["pred"].tolist() == [codes]


def test_region_probabilities_become_the_layouts_codes():
    probabilities = torch.tensor([[0.9, 0.2], [0.95, 0.6], [0.7, 0.1]])  # TC, WT, ET at two voxels
    assert AsLabelsd("pred", layout="brats2021")({"pred": probabilities})["pred"].tolist() == [[4, 2]]
    assert AsLabelsd("pred", layout="decathlon")({"pred": probabilities})["pred"].tolist() == [[3, 1]]


def test_case_folder_datalist(tiny_brats2021):
    items = brats_case_datalist(os.path.join(tiny_brats2021, "TrainingData"))
    assert len(items) == 6
    assert [os.path.basename(p).split("_")[-1] for p in items[0]["image"]] == ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"]
    assert items[0]["label"].endswith("_seg.nii.gz")
    val = labelled_datalist(os.path.join(tiny_brats2021, "TrainingData"), "brats2021", "val", num_folds=3, val_fold=0)
    assert len(val) == 2
    unlabelled = brats_case_datalist(os.path.join(tiny_brats2021, "ValidationData"), labelled=False)
    assert len(unlabelled) == 1 and "label" not in unlabelled[0]


def test_case_missing_a_modality_is_named(tiny_brats2021, tmp_path):
    data = str(tmp_path / "cases")
    shutil.copytree(os.path.join(tiny_brats2021, "TrainingData"), data)
    victim = sorted(glob.glob(os.path.join(data, "*", "*_t1ce.nii.gz")))[2]
    os.remove(victim)
    with pytest.raises(InputError, match=r"BraTS2021_00002: case misses modality file\(s\) \*_t1ce"):
        brats_case_datalist(data)


def test_mixed_layouts_are_refused(tiny_brats2021, tiny_brats_decathlon, tmp_path):
    data = str(tmp_path / "mixed")
    shutil.copytree(os.path.join(tiny_brats2021, "TrainingData"), data)
    shutil.copy(os.path.join(tiny_brats_decathlon, "dataset.json"), data)
    with pytest.raises(InputError, match="mixed layouts"):
        labelled_datalist(data, "brats2021")


def test_wrong_brats_folders_say_where_to_point(tiny_brats2021, tiny_brats_decathlon, tmp_path):
    with pytest.raises(InputError, match=r"a Decathlon dataset \(dataset.json\), not BraTS case folders: set --dataset_layout decathlon"):
        labelled_datalist(tiny_brats_decathlon, "brats2021")
    with pytest.raises(InputError, match=r"holds folders of cases \(TrainingData.*\), not cases: point --dataset_dir at"):
        labelled_datalist(tiny_brats2021, "brats2021")  # the release's top folder, not its TrainingData
    release = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    cases = sorted(glob.glob(os.path.join(tiny_brats2021, "TrainingData", "*")))
    for group, members in (("HGG", cases[:2]), ("LGG", cases[2:])):
        for case in members:
            shutil.copytree(case, release / group / os.path.basename(case))
    with pytest.raises(InputError, match=r"holds folders of cases \(HGG, LGG\), not cases"):
        labelled_datalist(str(release), "brats2021")


def test_synthetic_brats_labels_use_each_layouts_codes(tiny_brats_decathlon, tiny_brats2021):
    decathlon = nib.load(sorted(glob.glob(os.path.join(tiny_brats_decathlon, "labelsTr", "*.nii.gz")))[0])
    folders = nib.load(sorted(glob.glob(os.path.join(tiny_brats2021, "TrainingData", "*", "*_seg.nii.gz")))[0])
    assert set(np.unique(np.asarray(decathlon.dataobj))) == {0, 1, 2, 3}
    assert set(np.unique(np.asarray(folders.dataobj))) == {0, 1, 2, 4}
    image = nib.load(sorted(glob.glob(os.path.join(tiny_brats_decathlon, "imagesTr", "*.nii.gz")))[0])
    assert image.shape[3] == 4 and image.shape[:3] == decathlon.shape


def _train_evaluate_infer(tmp_path, train_dir, infer_dir, layout):
    root = str(tmp_path / "root")
    common = dict(bundle_root=root, dataset_layout=layout, **TINY_OVERRIDES)
    result = run_bundle(BRATS_16, ["configs/train.json"], dataset_dir=train_dir, epochs=1, **common)
    assert result.returncode == 0, result.stderr[-3000:]
    out = str(tmp_path / "eval")
    result = run_bundle(BRATS_16, ["configs/train.json", "configs/evaluate.json"], dataset_dir=train_dir, output_dir=out, **common)
    assert result.returncode == 0, result.stderr[-3000:]
    header = open(os.path.join(out, "val_mean_dice_raw.csv")).readline().strip().split(",")
    assert header == ["filename", "class0", "class1", "class2", "mean"]  # TC, WT, ET
    pred = str(tmp_path / "pred")
    result = run_bundle(BRATS_16, ["configs/inference.json"], dataset_dir=infer_dir, output_dir=pred, **common)
    assert result.returncode == 0, result.stderr[-3000:]
    return sorted(glob.glob(os.path.join(pred, "*_seg.nii.gz")))


def test_bundle_commands_on_the_decathlon_layout(tiny_brats_decathlon, tmp_path):
    written = _train_evaluate_infer(tmp_path, tiny_brats_decathlon, tiny_brats_decathlon, "decathlon")
    source = nib.load(glob.glob(os.path.join(tiny_brats_decathlon, "imagesTs", "*.nii.gz"))[0])
    assert len(written) == 1
    mask = nib.load(written[0])
    assert mask.shape == source.shape[:3]  # 96x96 slices padded to 256 and back
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2, 3}


def test_bundle_commands_on_the_case_folder_layout(tiny_brats2021, tmp_path):
    written = _train_evaluate_infer(
        tmp_path, os.path.join(tiny_brats2021, "TrainingData"), os.path.join(tiny_brats2021, "ValidationData"), "brats2021"
    )
    source = nib.load(glob.glob(os.path.join(tiny_brats2021, "ValidationData", "*", "*_flair.nii.gz"))[0])
    assert len(written) == 1
    mask = nib.load(written[0])
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2, 4}


def test_label_value_outside_the_layout_fails_clearly(tiny_brats2021, tmp_path):
    data = str(tmp_path / "cases")
    shutil.copytree(os.path.join(tiny_brats2021, "TrainingData"), data)
    seg = sorted(glob.glob(os.path.join(data, "*", "*_seg.nii.gz")))[0]
    label = nib.load(seg)
    values = np.asarray(label.dataobj).copy()
    values[values == 4] = 3  # a Task01 code in a BraTS 2021 layout
    nib.save(nib.Nifti1Image(values, label.affine), seg)
    result = run_bundle(
        BRATS_16, ["configs/train.json"], bundle_root=str(tmp_path / "root"), dataset_dir=data,
        dataset_layout="brats2021", epochs=1, val_fold=-1, **TINY_OVERRIDES,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "BraTS2021_00000_seg.nii.gz: label holds value(s) 3 outside the declared classes [0, 1, 2, 4]" in result.stderr
