"""The three bundle commands as a user types them (``python -m monai.bundle run ...`` in a subprocess)."""

import csv
import glob
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import BUNDLE_16, TINY_OVERRIDES, run_bundle

pytestmark = pytest.mark.timeout(900)


def test_train_writes_a_plain_state_dict(trained_root):
    state = torch.load(os.path.join(trained_root, "models", "model.pt"), weights_only=True)
    assert isinstance(state, dict) and "head.level_modules.0.conv.weight" in state
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert glob.glob(os.path.join(trained_root, "eval", "events.out.tfevents.*"))  # TensorBoard


def test_evaluate_saves_per_volume_per_class_dice_and_jaccard(trained_root, tiny_dataset, tmp_path):
    out = str(tmp_path / "eval")
    result = run_bundle(
        BUNDLE_16, ["configs/train.json", "configs/evaluate.json"],
        bundle_root=trained_root, dataset_dir=tiny_dataset, output_dir=out, **TINY_OVERRIDES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for metric in ("val_mean_dice", "val_mean_jaccard"):
        with open(os.path.join(out, f"{metric}_raw.csv")) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2  # the held-out fold of 6 cases in 3 folds
        assert set(rows[0]) == {"filename", "class0", "class1", "mean"}  # PZ, TZ (background excluded)
        for row in rows:
            assert 0.0 <= float(row["class1"]) <= 1.0
    dice = float(next(csv.DictReader(open(os.path.join(out, "val_mean_dice_raw.csv"))))["class1"])
    jaccard = float(next(csv.DictReader(open(os.path.join(out, "val_mean_jaccard_raw.csv"))))["class1"])
    assert jaccard == pytest.approx(dice / (2 - dice), abs=1e-4)  # the same masks scored two ways


def test_evaluate_every_labelled_case_with_val_fold_minus_one(trained_root, tiny_dataset, tmp_path):
    out = str(tmp_path / "eval_all")
    result = run_bundle(
        BUNDLE_16, ["configs/train.json", "configs/evaluate.json"],
        bundle_root=trained_root, dataset_dir=tiny_dataset, output_dir=out, val_fold=-1, **TINY_OVERRIDES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "val_mean_dice_raw.csv")) as f:
        assert len(list(csv.DictReader(f))) == 6


def test_inference_writes_masks_with_the_input_shape_and_affine(trained_root, tiny_dataset, tmp_path):
    out = str(tmp_path / "pred")
    result = run_bundle(
        BUNDLE_16, ["configs/inference.json"],
        bundle_root=trained_root, dataset_dir=tiny_dataset, output_dir=out, **TINY_OVERRIDES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    inputs = sorted(glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz")))
    assert inputs
    for path in inputs:
        name = os.path.basename(path).replace(".nii.gz", "_seg.nii.gz")
        image, mask = nib.load(path), nib.load(os.path.join(out, name))
        assert mask.shape == image.shape[:3]
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-5)
        np.testing.assert_allclose(mask.header.get_zooms()[:3], image.header.get_zooms()[:3], rtol=1e-5)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}


def _parameters(path, network):
    """The learnable tensors of a saved state dict (BatchNorm's running statistics move in any training)."""
    state = torch.load(path, weights_only=True)
    names = {name for name, _ in network.named_parameters()}
    return {k: v for k, v in state.items() if k in names}


def test_fine_tuning_starts_from_the_given_weights(trained_root, tiny_dataset, tmp_path):
    """One epoch at learning rate 0: every parameter of the fine-tuned model.pt equals the --pretrained_file's
    exactly (Adam's step is lr x ..., 0), while the same run without --finetune keeps its random start - so an
    ignored --pretrained_file fails here."""
    from jnet.bundles.parse import bundle_network

    network = bundle_network(BUNDLE_16)
    pretrained = os.path.join(trained_root, "models", "model.pt")
    saved = {}
    for finetune in (True, False):
        root = str(tmp_path / f"finetune_{finetune}")
        result = run_bundle(
            BUNDLE_16, ["configs/train.json"], bundle_root=root, dataset_dir=tiny_dataset, epochs=1, learning_rate=0.0,
            finetune=finetune, pretrained_file=pretrained, **TINY_OVERRIDES,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        saved[finetune] = _parameters(os.path.join(root, "models", "model.pt"), network)
    start = _parameters(pretrained, network)
    assert len(start) == len(list(network.parameters())) > 0
    assert set(saved[True]) == set(start) and all(torch.equal(saved[True][k], v) for k, v in start.items())
    assert not all(torch.equal(saved[False][k], v) for k, v in start.items())  # a fresh start is another model


def test_baseline_ablation_keeps_its_own_weights_file(trained_root, tiny_dataset):
    before = open(os.path.join(trained_root, "models", "model.pt"), "rb").read()
    result = run_bundle(
        BUNDLE_16, ["configs/train.json", "configs/train_baseline.json"],
        bundle_root=trained_root, dataset_dir=tiny_dataset, epochs=1, **TINY_OVERRIDES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(os.path.join(trained_root, "models", "model_baseline.pt"), weights_only=True)
    assert not any(k.startswith("head.level_modules") for k in state)
    assert open(os.path.join(trained_root, "models", "model.pt"), "rb").read() == before


def _assert_clean_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    message = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert message, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in message[-1], message[-1]


def test_missing_dataset_dir_fails_clearly(tmp_path):
    missing = str(tmp_path / "no_such_dir")
    result = run_bundle(BUNDLE_16, ["configs/train.json"], bundle_root=str(tmp_path), dataset_dir=missing, epochs=1)
    _assert_clean_error(result, missing, "does not exist")


def test_label_with_undeclared_class_fails_clearly_and_keeps_the_model(trained_root, tiny_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(tiny_dataset, data)
    bad = os.path.join(data, "labelsTr", "prostate_04.nii.gz")
    label = nib.load(bad)
    values = np.asarray(label.dataobj).copy()
    values[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(values, label.affine), bad)
    root = str(tmp_path / "root")
    shutil.copytree(trained_root, root)
    before = open(os.path.join(root, "models", "model.pt"), "rb").read()
    result = run_bundle(
        BUNDLE_16, ["configs/train.json"], bundle_root=root, dataset_dir=data, epochs=1, val_fold=-1, **TINY_OVERRIDES
    )
    _assert_clean_error(result, "prostate_04.nii.gz", "value(s) 7 outside")
    assert open(os.path.join(root, "models", "model.pt"), "rb").read() == before


def test_wrong_channel_count_fails_clearly_at_inference(trained_root, tiny_dataset, tmp_path):
    data = str(tmp_path / "data")
    os.makedirs(os.path.join(data, "imagesTs"))
    source = sorted(glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz")))[0]
    image = nib.load(source)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., :1], image.affine), os.path.join(data, "imagesTs", "one.nii.gz"))
    result = run_bundle(BUNDLE_16, ["configs/inference.json"], bundle_root=trained_root, dataset_dir=data, **TINY_OVERRIDES)
    _assert_clean_error(result, "one.nii.gz", "expects 2 channel")


def test_inference_on_listed_files_with_device_override(trained_root, tiny_dataset, tmp_path):
    out = str(tmp_path / "listed")
    source = os.path.join(tiny_dataset, "imagesTr", "prostate_02.nii.gz")
    result = run_bundle(
        BUNDLE_16, ["configs/inference.json"], bundle_root=trained_root, output_dir=out,
        input_files=f"['{source}']", device="cpu", **TINY_OVERRIDES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(out) == ["prostate_02_seg.nii.gz"]
