"""Reliability: the bad-input matrix (in-process, through each bundle's own datalist and pre-processing), one
subprocess per command for the exit code and the one-line message, batch inference that keeps going past bad
files, atomic weights files, a killed training resumed, and CPU determinism."""

from __future__ import annotations

import csv
import glob
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine

from conftest import BUNDLE_16, BUNDLES, TINY_OVERRIDES, run_bundle
from jnet.bundles.parse import bundle_parser
from jnet.tools.bundle_commands import bundle_command
from jnet.tools.synthetic import write_brats_task, write_prostate_task
from jnet.errors import InputError, find_input_error
from jnet.handlers import atomic_save

BRATS_16 = os.path.join(BUNDLES, "brats_mri_lowres_16")
PERMUTE = [[2, 1], [0, -1], [1, 1]]  # nibabel orientation transform: H x W x D stored as W x D x H, W flipped


# ----------------------------------------------------------------------------------------------- data helpers
def _edit(path: str, change: Callable[[np.ndarray], np.ndarray]) -> str:
    """Rewrite a NIfTI file with ``change(voxels)``, keeping its affine."""
    image = nib.load(path)
    nib.save(nib.Nifti1Image(change(np.asarray(image.dataobj).copy()), image.affine), path)
    return path


def _set(index: tuple, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(voxels: np.ndarray) -> np.ndarray:
        voxels[index] = value
        return voxels

    return change


def _truncate(path: str) -> str:
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    return path


def _corrupt(path: str) -> str:
    """Zero 64 bytes in the middle of the gzip stream: still decodes (to garbage), only gzip's CRC check sees it."""
    raw = bytearray(open(path, "rb").read())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(64)
    open(path, "wb").write(bytes(raw))
    return path


def _reorient(path: str) -> str:
    """The same volume in the same world position, stored with permuted and flipped axes (not RAS, not LPS)."""
    nib.save(nib.load(path).as_reoriented(PERMUTE), path)
    return path


def _shift(path: str, mm: float) -> str:
    """The same voxels, the grid moved by ``mm`` along the world x axis (its affine only)."""
    image = nib.load(path)
    affine = image.affine.copy()
    affine[0, 3] += mm
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine, image.header), path)
    return path


def _coarser_grid(path: str) -> str:
    """The same anatomy on a grid of half the in-plane voxels at twice the spacing (2x2 block means, voxel centres
    kept in the same world place): a sequence acquired at a lower resolution."""
    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float32)
    h, w = data.shape[0] // 2 * 2, data.shape[1] // 2 * 2
    blocks = data[:h, :w].reshape(h // 2, 2, w // 2, 2, *data.shape[2:]).mean(axis=(1, 3))
    nib.save(nib.Nifti1Image(blocks, image.affine @ np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1.0]])), path)
    return path


def _crop_8x8(path: str) -> str:
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[16:24, 12:20].copy(), image.affine), path)
    return path


def _prostate_image(data: str, command: str) -> str:
    if command == "infer":
        return os.path.join(data, "imagesTs", "prostate_03.nii.gz")
    return os.path.join(data, "imagesTr", "prostate_01.nii.gz")


def _prostate_label(data: str) -> str:
    return os.path.join(data, "labelsTr", "prostate_01.nii.gz")


def _brats_file(data: str, command: str, suffix: str) -> str:
    folder = "ValidationData" if command == "infer" else "TrainingData"
    return sorted(glob.glob(os.path.join(data, folder, "*", f"*_{suffix}.nii.gz")))[0]


@pytest.fixture(scope="module")
def prostate_base(tmp_path_factory) -> str:
    """3 labelled + 1 test volume, 40x32 slices, 3 slices each (LPS, 0.67 x 0.67 x 3.5 mm)."""
    out = str(tmp_path_factory.mktemp("prostate_base"))
    write_prostate_task(out, num_train=3, num_test=1, seed=5, slice_sizes=((40, 32),), num_slices=(3, 3))
    return out


@pytest.fixture(scope="module")
def brats_base(tmp_path_factory) -> str:
    """BraTS 2018-21 case folders: 3 labelled, 1 unlabelled, 32x32x3."""
    out = str(tmp_path_factory.mktemp("brats_base"))
    return write_brats_task(out, "brats2021", 3, 1, seed=4, size=(32, 32), num_slices=(3, 3))


# --------------------------------------------------------------------------------------- the in-process matrix
def _run_in_process(command: str, family: str, data: str, input_files: list[str] | None = None) -> dict[str, list[dict]]:
    """A command's data path as its bundle defines it (datalist expression, then pre-processing of every item),
    in-process: ``{first image file: [pre-processed samples]}``."""
    bundle, layout = (BUNDLE_16, "decathlon") if family == "prostate" else (BRATS_16, "brats2021")
    if command == "sweep":
        from jnet.tools.sweep.data import load_sweep_data

        load_sweep_data(bundle, data, os.path.join(data + "_sweep", "cache.pt"), num_folds=3, val_fold=-1)
        return {}
    parser = bundle_parser(bundle, base="configs/inference.json" if command == "infer" else "configs/train.json")
    parser["dataset_layout"] = layout
    if command == "infer":
        parser["dataset_dir"] = os.path.join(data, "ValidationData") if family == "brats" else data
        parser["input_files"] = input_files
        inputs = parser.get_parsed_content("inputs")
        items, transform = inputs.items, parser.get_parsed_content("preprocessing")
    else:
        parser["dataset_dir"] = os.path.join(data, "TrainingData") if family == "brats" else data
        parser["val_fold"] = -1
        prefix = "train" if command == "train" else "validate"
        items, transform = parser.get_parsed_content(f"{prefix}#dataset#data"), parser.get_parsed_content(f"{prefix}#preprocessing")
    results = {}
    for item in items:
        out = transform(dict(item))
        key = item["image"][0] if isinstance(item["image"], list) else item["image"]
        results[key] = out if isinstance(out, list) else [out]
    if command == "infer":
        inputs.raise_if_failed()
    return results


def _all_finite(results: dict[str, list[dict]]) -> None:
    for samples in results.values():
        for sample in samples:
            assert torch.isfinite(torch.as_tensor(sample["image"])).all()


def _check_zero(results, target, command, base):
    _all_finite(results)
    for sample in results[target]:
        assert torch.count_nonzero(torch.as_tensor(sample["image"])) == 0  # z-normalising zeros gives zeros, not NaN


def _check_empty_label(results, target, command, base):
    _all_finite(results)
    for sample in results[target]:
        assert torch.count_nonzero(torch.as_tensor(sample["label"])) == 0


def _check_small(results, target, command, base):
    _all_finite(results)
    for sample in results[target]:
        assert tuple(sample["image"].shape[:3]) == (2, 16, 16)  # the 8x8 slices reach the 16x16 network input
        if command != "infer":
            assert tuple(sample["label"].shape[1:3]) == (256, 256)  # and the ground truth the 256 grid


def _check_reoriented(results, target, command, base):
    _all_finite(results)
    if command == "train":  # random slices and flips: nothing to compare one to one
        return
    (mine,), (reference,) = results[target], base[target]
    for key in ("image",) if command == "infer" else ("image", "label"):  # the same RAS arrays as the original
        torch.testing.assert_close(torch.as_tensor(mine[key]), torch.as_tensor(reference[key]), rtol=0, atol=1e-5)


@dataclass(frozen=True)
class Case:
    """One bad (or awkward) input: how to make it, where it applies, and the expected error (``None``: must run)."""

    name: str
    family: str  # "prostate" (Decathlon layout, 16 bundle) or "brats" (case folders, BraTS 16 bundle)
    commands: tuple[str, ...]
    make: Callable[[str, str], str | list[str]]  # (dataset copy, command) -> the file (or input_files) it changed
    expect: str | None = None  # regex; {file} is the changed file
    check: Callable | None = None  # for inputs that must run: (results, file, command, unchanged results)


LABELLED = ("train", "evaluate")
ALL = ("train", "evaluate", "infer")


def _no_dir(data, command):
    shutil.rmtree(data)
    return data


def _write(name, text):
    def make(data, command):
        path = os.path.join(data, name)
        if text is None:
            os.remove(path)
        else:
            open(path, "w").write(text)
        return path

    return make


CASES = [
    Case("dataset_dir missing", "prostate", ALL + ("sweep",), _no_dir, r"dataset_dir '{file}' does not exist or is not a folder"),
    Case("dataset.json missing", "prostate", LABELLED, _write("dataset.json", None), r"{file}: no dataset.json in the dataset folder"),
    Case("dataset.json missing, inference", "prostate", ("infer",), _write("dataset.json", None), check=lambda *a: _all_finite(a[0])),
    Case("dataset.json not JSON", "prostate", LABELLED, _write("dataset.json", "{'training': ["), r"{file}: not valid JSON"),
    Case("dataset.json without training", "prostate", LABELLED, _write("dataset.json", '{"test": []}'), r"{file}: no 'training' list"),
    Case("listed file missing", "prostate", LABELLED, lambda d, c: (os.remove(_prostate_label(d)), _prostate_label(d))[1],
         r"{file}: file does not exist \(listed in .*dataset\.json\)"),
    Case("input file missing", "prostate", ("infer",), lambda d, c: [os.path.join(d, "imagesTs", "gone.nii.gz")], r"{file}: file does not exist"),
    Case("truncated .nii.gz", "prostate", ALL + ("sweep",), lambda d, c: _truncate(_prostate_image(d, c)),
         r"{file}: the voxel data cannot be read - the file is truncated or corrupt \(Compressed file ended"),
    Case("corrupt .nii.gz (decodes, bad CRC)", "prostate", ALL, lambda d, c: _corrupt(_prostate_image(d, c)),
         r"{file}: the voxel data cannot be read - the file is truncated or corrupt \(CRC check failed"),
    Case("truncated label", "prostate", LABELLED, lambda d, c: _truncate(_prostate_label(d)), r"{file}: the voxel data cannot be read"),
    Case("2D image", "prostate", ALL, lambda d, c: _edit(_prostate_image(d, c), lambda v: v[:, :, 0, 0]), r"{file}: image has 2 dimensions"),
    Case("3D image, 4D expected", "prostate", ALL, lambda d, c: _edit(_prostate_image(d, c), lambda v: v[..., 0]),
         r"{file}: image has a 3D volume \(shape \(40, 32, 3\)\) but the bundle expects 2 channel\(s\)"),
    Case("4D label, 3D expected", "prostate", LABELLED, lambda d, c: _edit(_prostate_label(d), lambda v: np.stack([v, v], -1)),
         r"{file}: label has shape \(40, 32, 3, 2\); expected a 3D H x W x D volume"),
    Case("4D modality file, 3D expected", "brats", ALL, lambda d, c: _edit(_brats_file(d, c, "t1ce"), lambda v: np.stack([v, v], -1)),
         r"{file}: image has 2 channels \(shape \(32, 32, 3, 2\)\) but the bundle expects 1 channel\(s\)"),
    Case("wrong channel count", "prostate", ALL, lambda d, c: _edit(_prostate_image(d, c), lambda v: np.concatenate([v, v[..., :1]], -1)),
         r"{file}: image has 3 channels .* expects 2 channel\(s\)"),
    Case("label shape differs", "prostate", LABELLED, lambda d, c: _edit(_prostate_label(d), lambda v: v[:-2]),
         r"{file}: label shape \(38, 32, 3\) differs from its image's \(40, 32, 3\)"),
    Case("label affine shifted 2 mm", "prostate", LABELLED, lambda d, c: _shift(_prostate_label(d), 2.0),
         r"{file}: the label's affine differs from its image's \(.*prostate_01\.nii\.gz\): the grids are up to 2\.00 mm apart"),
    Case("a BraTS modality on a coarser grid", "brats", ALL, lambda d, c: _coarser_grid(_brats_file(d, c, "t1")),
         check=lambda *a: _all_finite(a[0])),
    Case("a BraTS modality far from the others", "brats", ALL, lambda d, c: _shift(_brats_file(d, c, "t2"), 1000.0),
         r"{file}: its grid does not overlap the grid of .*_flair\.nii\.gz in world coordinates"),
    Case("label value outside the classes", "prostate", LABELLED, lambda d, c: _edit(_prostate_label(d), _set((1, 1, 1), 7)),
         r"{file}: label holds value\(s\) 7 outside the declared classes \[0, 1, 2\]"),
    Case("NaN in an image", "prostate", ALL + ("sweep",), lambda d, c: _edit(_prostate_image(d, c), _set((3, 4, 1, 0), np.nan)),
         r"{file}: holds 1 NaN and 0 Inf voxel value\(s\) of 7680"),
    Case("Inf in an image", "prostate", ALL, lambda d, c: _edit(_prostate_image(d, c), _set((slice(0, 2), 4, 1, 1), -np.inf)),
         r"{file}: holds 0 NaN and 2 Inf voxel value\(s\)"),
    Case("NaN in one BraTS modality file", "brats", ALL, lambda d, c: _edit(_brats_file(d, c, "t2"), _set((3, 4, 1), np.nan)),
         r"{file}: holds 1 NaN and 0 Inf"),
    Case("all-zero image", "prostate", ALL, lambda d, c: _edit(_prostate_image(d, c), np.zeros_like), check=_check_zero),
    Case("empty label", "prostate", LABELLED, lambda d, c: (_edit(_prostate_label(d), np.zeros_like), _prostate_image(d, c))[1],
         check=_check_empty_label),
    Case("8x8 image, 16x16 bundle", "prostate", ALL,
         lambda d, c: (c == "infer" or _crop_8x8(_prostate_label(d)), _crop_8x8(_prostate_image(d, c)))[1], check=_check_small),
    Case("permuted axes, anisotropic", "prostate", ALL,
         lambda d, c: (c == "infer" or _reorient(_prostate_label(d)), _reorient(_prostate_image(d, c)))[1], check=_check_reoriented),
]
MATRIX = [pytest.param(case, command, id=f"{case.name}-{command}") for case in CASES for command in case.commands]


@pytest.mark.parametrize("case, command", MATRIX)
def test_bad_input_matrix(case, command, prostate_base, brats_base, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(prostate_base if case.family == "prostate" else brats_base, data)
    unchanged = _run_in_process(command, case.family, data) if case.check is _check_reoriented else {}
    changed = case.make(data, command)
    input_files = changed if isinstance(changed, list) else None
    if case.expect is None:
        case.check(_run_in_process(command, case.family, data, input_files), changed, command, unchanged)
        return
    with pytest.raises(Exception) as info:
        _run_in_process(command, case.family, data, input_files)
    error = find_input_error(info.value)  # what the excepthook prints as "ERROR: <message>"
    assert error is not None, f"not an InputError: {info.value!r}"
    file = changed[0] if isinstance(changed, list) else changed
    assert re.search(case.expect.format(file=re.escape(file)), str(error)), str(error)


def test_inference_screening_skips_a_bad_case_folder_and_keeps_the_others(brats_base, tmp_path):
    from jnet.data import inference_inputs

    cases = _copy(os.path.join(brats_base, "TrainingData"), tmp_path, "cases")  # 3 case folders (labels unused)
    victim = sorted(glob.glob(os.path.join(cases, "*")))[1]
    os.remove(glob.glob(os.path.join(victim, "*_t1.nii.gz"))[0])
    screened = inference_inputs(cases, "brats2021", in_channels=4)
    assert [os.path.basename(os.path.dirname(item["image"][0])) for item in screened.items] == ["BraTS2021_00000", "BraTS2021_00002"]
    assert screened.failures == [f"{victim}: case misses modality file(s) *_t1.nii.gz."]
    with pytest.raises(Exception, match=r"1 of 3 input\(s\) skipped \(2 processed\): .*BraTS2021_00001: case misses"):
        screened.raise_if_failed()


# ------------------------------------------------------------------------------- one subprocess per command
def _error_line(result: subprocess.CompletedProcess) -> str:
    """The command failed cleanly: non-zero exit, no traceback, and its last ``ERROR: `` line."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert lines, result.stderr[-3000:]
    return lines[-1]


def _copy(base: str, tmp_path, name: str = "data") -> str:
    data = str(tmp_path / name)
    shutil.copytree(base, data)
    return data


@pytest.mark.slow
def test_train_refuses_a_truncated_file_and_keeps_the_previous_model(prostate_base, tmp_path):
    data = _copy(prostate_base, tmp_path)
    bad = _truncate(_prostate_image(data, "train"))
    model = str(tmp_path / "root" / "models" / "model.pt")
    atomic_save({"weight": torch.arange(4.0)}, model)  # an earlier run's weights
    before = open(model, "rb").read()
    result = run_bundle(
        BUNDLE_16, ["configs/train.json"], bundle_root=str(tmp_path / "root"), dataset_dir=data, epochs=1, val_fold=-1, **TINY_OVERRIDES
    )
    assert _error_line(result).startswith(f"ERROR: {bad}: the voxel data cannot be read - the file is truncated or corrupt (")
    assert open(model, "rb").read() == before
    assert os.listdir(os.path.dirname(model)) == ["model.pt"]


@pytest.mark.slow
def test_a_bad_label_found_by_a_loader_thread_exits_1_not_an_abort(prostate_base, tmp_path):
    """With the default ``num_workers`` (2) the bad label is found by one of CacheDataset's threads while the others
    are still loading: the process must end with the one line and status 1 - not "terminate called without an
    active exception" and SIGABRT (134) from tearing down torch under the running threads."""
    data = _copy(prostate_base, tmp_path)
    bad = _edit(_prostate_label(data), _set((1, 1, 1), 7))
    overrides = {k: v for k, v in TINY_OVERRIDES.items() if k != "num_workers"}
    for _ in range(3):  # the abort depended on thread timing: here about one run in three on this small data
        result = run_bundle(os.path.join(BUNDLES, "prostate_mri_lowres_32"), ["configs/train.json"], bundle_root=str(tmp_path / "root"),
                            dataset_dir=data, epochs=1, **overrides)  # fmt: skip
        assert result.returncode == 1, result.stderr[-2000:]
        assert _error_line(result) == f"ERROR: {bad}: label holds value(s) 7 outside the declared classes [0, 1, 2]."
        assert "terminate called" not in result.stderr


@pytest.mark.slow
def test_missing_or_unfitting_weights_are_one_line_before_any_work(prostate_base, tmp_path):
    """Evaluate / infer before any training, fine-tune from a missing file or from weights of another network:
    one line naming the weights file (not CheckpointLoader's or load_state_dict's traceback)."""
    root = str(tmp_path / "root")
    model = os.path.join(root, "models", "model.pt")
    common = dict(bundle_root=root, dataset_dir=prostate_base, **TINY_OVERRIDES)
    for files in (["configs/train.json", "configs/evaluate.json"], ["configs/inference.json"]):
        result = run_bundle(BUNDLE_16, files, output_dir=str(tmp_path / "out"), **common)
        assert _error_line(result) == f"ERROR: {model}: no such weights file (train the bundle first, or pass --model_file)."
    missing = str(tmp_path / "pretrained.pt")
    result = run_bundle(BUNDLE_16, ["configs/train.json"], finetune=True, pretrained_file=missing, epochs=1, **common)
    assert _error_line(result) == f"ERROR: {missing}: no such weights file (check --pretrained_file)."
    torch.save(torch.ones(3), missing)  # a tensor, not a state dict
    result = run_bundle(BUNDLE_16, ["configs/train.json"], finetune=True, pretrained_file=missing, epochs=1, **common)
    assert _error_line(result) == f"ERROR: {missing}: holds a Tensor, not a state dict of weights."
    parser = bundle_parser(BUNDLE_16)  # features 8: not the features 4 of this training
    atomic_save(parser.get_parsed_content("network_def").state_dict(), missing)
    result = run_bundle(BUNDLE_16, ["configs/train.json"], finetune=True, pretrained_file=missing, epochs=1, **common)
    assert _error_line(result) == (
        f"ERROR: {missing}: the weights do not fit the bundle's network_def (size mismatch for backbone.in_conv.0.weight: "
        "copying a param with shape torch.Size([8, 2, 3, 3]) from checkpoint, the shape in current model is "
        "torch.Size([4, 2, 3, 3])); pass the overrides it was trained with, here features 8 (its first convolution "
        "has 8 filters): --features 8 in a bundle command, --overrides \"{'features': 8}\" for jnet export and pack."
    )
    assert not os.path.exists(model)


@pytest.mark.slow
def test_a_bad_image_read_in_a_dataloader_worker_is_one_line(prostate_base, tmp_path):
    """``--cache_rate 0`` (what the full BraTS set needs) with worker processes: the error crosses the process
    boundary inside MONAI's RuntimeError and is still printed as its one line."""
    data = _copy(prostate_base, tmp_path)
    bad = _edit(_prostate_image(data, "train"), _set((3, 4, 1, 0), np.nan))
    overrides = {**TINY_OVERRIDES, "num_workers": 2, "cache_rate": 0.0}
    result = run_bundle(BUNDLE_16, ["configs/train.json"], bundle_root=str(tmp_path / "root"), dataset_dir=data, epochs=1, val_fold=-1, **overrides)
    assert _error_line(result) == (
        f"ERROR: {bad}: holds 1 NaN and 0 Inf voxel value(s) of 7680; they are not replaced automatically - fix or re-export the file."
    )


@pytest.mark.slow
def test_evaluate_refuses_an_image_with_nan(prostate_base, tmp_path):
    data = _copy(prostate_base, tmp_path)
    bad = _edit(_prostate_image(data, "evaluate"), _set((3, 4, 1, 0), np.nan))
    _structured_model(str(tmp_path / "root"), _prostate_image(prostate_base, "evaluate"))  # weights to evaluate
    result = run_bundle(
        BUNDLE_16, ["configs/train.json", "configs/evaluate.json"], bundle_root=str(tmp_path / "root"), dataset_dir=data,
        output_dir=str(tmp_path / "eval"), val_fold=-1, **TINY_OVERRIDES,
    )
    assert _error_line(result) == (
        f"ERROR: {bad}: holds 1 NaN and 0 Inf voxel value(s) of 7680; they are not replaced automatically - fix or re-export the file."
    )


def _structured_model(root: str, image: str) -> None:
    """Weights of the 16 bundle (features 4, as TINY_OVERRIDES) whose mask of ``image`` has structure: seeded
    random weights with zero biases (so the logits follow the image, not a constant), the first seed whose
    argmax gives at least two classes on 5 % of the pixels each. Saved as a plain state dict."""
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    parser["features"] = TINY_OVERRIDES["features"]
    slices = parser.get_parsed_content("preprocessing")({"image": image})["image"].as_tensor().permute(3, 0, 1, 2)
    for seed in range(20):
        torch.manual_seed(seed)
        network = parser.get_parsed_content("network_def", lazy=False).eval()
        for name, parameter in network.named_parameters():
            if name.endswith("bias"):
                parameter.data.zero_()
        with torch.no_grad():
            counts = torch.bincount(network(slices).argmax(1).flatten(), minlength=3)
        if (counts > 0.05 * counts.sum()).sum() >= 2:
            atomic_save(network.state_dict(), os.path.join(root, "models", "model.pt"))
            return
    raise AssertionError("no seed gives a mask with structure")


def _mask(out_dir: str, image_path: str) -> nib.Nifti1Image:
    return nib.load(os.path.join(out_dir, os.path.basename(image_path).replace(".nii.gz", "_seg.nii.gz")))


@pytest.mark.slow
def test_batch_inference_skips_bad_files_writes_every_good_one_and_fails_at_the_end(prostate_base, tmp_path):
    source = _prostate_image(prostate_base, "infer")  # LPS, 0.67 x 0.67 x 3.5 mm
    folder = tmp_path / "data" / "imagesTs"
    os.makedirs(folder)
    files = {name: str(folder / f"{name}.nii.gz") for name in ("all_zero", "case_lps", "case_permuted", "small_8x8", "truncated", "with_nan")}
    for name, path in files.items():
        shutil.copy(source, path)
    _edit(files["all_zero"], np.zeros_like)
    _reorient(files["case_permuted"])
    _crop_8x8(files["small_8x8"])
    _truncate(files["truncated"])
    _edit(files["with_nan"], _set((3, 4, 1, 0), np.nan))
    root, out = str(tmp_path / "root"), str(tmp_path / "pred")
    _structured_model(root, files["case_lps"])

    result = run_bundle(
        BUNDLE_16, ["configs/inference.json"], bundle_root=root, dataset_dir=str(tmp_path / "data"), output_dir=out, **TINY_OVERRIDES
    )

    line = _error_line(result)
    assert line.startswith("ERROR: 2 of 6 input(s) skipped (4 processed): "), line
    assert f"{files['truncated']}: the voxel data cannot be read - the file is truncated or corrupt" in line
    assert f"{files['with_nan']}: holds 1 NaN and 0 Inf voxel value(s)" in line
    # each bad file is reported when it is found - when its voxels are read, in turn (each file is decompressed once),
    # after the good files before it were written
    log = result.stdout
    started = log.index("SupervisedEvaluator")
    assert started < log.index(f"skipped {files['truncated']}") < log.index(f"skipped {files['with_nan']}")
    assert log.index(files["small_8x8"].replace(".nii.gz", "_seg.nii.gz").replace(str(folder), out)) < log.index(f"skipped {files['truncated']}")
    assert sorted(os.listdir(out)) == [f"{n}_seg.nii.gz" for n in ("all_zero", "case_lps", "case_permuted", "small_8x8")]
    for name in ("all_zero", "case_lps", "case_permuted", "small_8x8"):
        image, mask = nib.load(files[name]), _mask(out, files[name])
        assert mask.shape == image.shape[:3], name
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-5)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
    # the permuted copy's mask, brought back to the original's axes, is the original's mask voxel for voxel
    original, permuted = _mask(out, files["case_lps"]), _mask(out, files["case_permuted"])
    back = nib.orientations.ornt_transform(nib.io_orientation(permuted.affine), nib.io_orientation(original.affine))
    restored = permuted.as_reoriented(back)
    np.testing.assert_allclose(restored.affine, original.affine, atol=1e-5)
    labels = np.asarray(original.dataobj)
    np.testing.assert_array_equal(np.asarray(restored.dataobj), labels)
    counts = np.bincount(labels.ravel(), minlength=3)
    assert (counts > 0.01 * labels.size).sum() >= 2, counts  # a mask with structure, not all one class


# ------------------------------------------------------------------------------------- atomic weights files
# A child interpreter that saves through atomic_save an object whose pickling creates ``marker`` (the write is
# under way, the partial file open) and then hangs until it is killed. A fresh interpreter, not os.fork(): forking
# a process whose OpenMP threads have run can deadlock the child before it writes anything.
_HANGING_SAVE = """
import sys, time
import torch
from jnet.handlers.atomic import atomic_save

class HangsWhilePickled:
    def __reduce__(self):
        open(sys.argv[2], "w").close()
        time.sleep(600)

atomic_save({"weight": torch.zeros(256, 256), "hangs": HangsWhilePickled()}, sys.argv[1])
"""


def test_a_kill_during_a_save_leaves_the_previous_file_intact(tmp_path):
    path, marker = str(tmp_path / "model.pt"), str(tmp_path / "writing")
    atomic_save({"weight": torch.ones(3)}, path)
    before = open(path, "rb").read()
    child = subprocess.Popen([sys.executable, "-c", _HANGING_SAVE, path, marker])
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(marker):  # the child is inside torch.save, its output file open
            assert child.poll() is None and time.monotonic() < deadline, "the save did not start"
            time.sleep(0.01)
        assert os.path.exists(str(tmp_path / ".model.pt.partial"))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert open(path, "rb").read() == before
    assert torch.equal(torch.load(path, weights_only=True)["weight"], torch.ones(3))
    atomic_save({"weight": torch.full((3,), 2.0)}, path)  # the next save replaces the leftover partial file
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "writing"]
    assert torch.equal(torch.load(path, weights_only=True)["weight"], torch.full((3,), 2.0))


def test_a_failed_save_leaves_the_previous_file_and_no_partial_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    path = str(tmp_path / "model.pt")
    atomic_save({"weight": torch.ones(3)}, path)
    before = open(path, "rb").read()
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"weight": torch.zeros(1000), "bad": Unpicklable()}, path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["model.pt"]


# ------------------------------------------------------------------------------------- interrupted training
def _epochs_started(log: str, total: int) -> list[int]:
    """Epochs whose first iteration the StatsHandler logged ("Epoch: 3/6, Iter: 1/...")."""
    return [int(n) for n in re.findall(rf"Epoch: (\d+)/{total}, Iter: 1/", log)]


@pytest.mark.slow
def test_a_killed_training_resumes_at_the_next_epoch_and_finishes(prostate_base, tmp_path):
    root, epochs = str(tmp_path / "root"), 4
    overrides = dict(bundle_root=root, dataset_dir=prostate_base, epochs=epochs, val_fold=-1, **TINY_OVERRIDES)
    command = bundle_command(["configs/train.json"], overrides)
    resume_file = os.path.join(root, "models", "model_resume.pt")
    log_path = str(tmp_path / "killed.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=BUNDLE_16, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 300
            # kill it inside epoch 2: epoch 1's checkpoint is on disk and epoch 2's first iteration is logged
            while not (os.path.exists(resume_file) and 2 in _epochs_started(open(log_path).read(), epochs)):
                assert process.poll() is None, "training ended before it could be killed:\n" + open(log_path).read()[-3000:]
                assert time.monotonic() < deadline, "training did not reach epoch 2"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
    killed = torch.load(resume_file, weights_only=True)
    done = killed["trainer"]["iteration"] // killed["trainer"]["epoch_length"]
    assert 1 <= done < epochs

    result = run_bundle(BUNDLE_16, ["configs/train.json"], resume=True, **overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {resume_file} after epoch {done} of {epochs}" in result.stdout
    assert _epochs_started(result.stdout, epochs) == list(range(done + 1, epochs + 1))
    final = torch.load(resume_file, weights_only=True)
    iterations = epochs * final["trainer"]["epoch_length"]
    assert final["trainer"]["iteration"] == iterations
    # Adam's step count went on from the killed run's: the optimizer state was restored, not restarted
    assert {int(s["step"]) for s in final["optimizer"]["state"].values()} == {iterations}
    # and the cosine learning-rate schedule went on from the killed run's epoch, ending where a full run ends
    assert final["lr_scheduler"]["last_epoch"] == epochs
    assert final["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cos(pi) at the last epoch
    # a finished run extended with a larger --epochs anneals to the NEW end (the schedule is not frozen at 4)
    longer = run_bundle(BUNDLE_16, ["configs/train.json"], resume=True, **{**overrides, "epochs": epochs + 2})
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert _epochs_started(longer.stdout, epochs + 2) == [epochs + 1, epochs + 2]
    extended = torch.load(resume_file, weights_only=True)
    assert extended["lr_scheduler"]["last_epoch"] == epochs + 2
    assert extended["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    parser = bundle_parser(BUNDLE_16)
    parser["features"] = TINY_OVERRIDES["features"]
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(os.path.join(root, "models", "model.pt"), weights_only=True))  # strict
    network.load_state_dict(final["model"])
    # resume mistakes stop with one line naming the checkpoint - before the engine runs, so no engine traceback
    # in the log either - and leave the trained files as they were
    kept = {name: open(os.path.join(root, "models", name), "rb").read() for name in ("model.pt", "model_resume.pt")}
    mistakes = {
        "features": f"ERROR: {resume_file}: the resume checkpoint does not match this training configuration (size mismatch for ",
        "epochs": f"ERROR: {resume_file}: the run already trained {epochs + 2} epochs; set --epochs to at least {epochs + 2}.",
    }
    for key, expected in mistakes.items():
        wrong = {**overrides, "features": 8} if key == "features" else {**overrides, "epochs": 2}
        result = run_bundle(BUNDLE_16, ["configs/train.json"], resume=True, **wrong)
        assert _error_line(result).startswith(expected), result.stderr[-2000:]
        assert "Traceback" not in result.stdout and "Engine run is terminating" not in result.stdout, result.stdout[-3000:]
    for name, content in kept.items():
        assert open(os.path.join(root, "models", name), "rb").read() == content, name


def test_a_resumed_run_replaces_model_pt_only_with_a_better_model_than_before_the_interruption(prostate_base, tmp_path):
    """The resume checkpoint (written after every epoch: what a kill leaves) carries the best validation metric so
    far. A resumed run compares against it: with a recorded best no model can beat (Dice 1.0, the comparison is a
    strict >) model.pt stays byte-identical; with one every model beats (-1.0) the resumed run's model replaces it.
    A ResumeCheckpoint that forgot the best would overwrite model.pt in the first case."""
    root = str(tmp_path / "root")
    overrides = dict(bundle_root=root, dataset_dir=prostate_base, val_fold=-1, **TINY_OVERRIDES)
    result = run_bundle(BUNDLE_16, ["configs/train.json"], epochs=2, **overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    model_file, resume_file = (os.path.join(root, "models", name) for name in ("model.pt", "model_resume.pt"))
    checkpoint = torch.load(resume_file, weights_only=True)
    assert 1 <= checkpoint["best_metric"]["epoch"] <= 2 and 0.0 <= checkpoint["best_metric"]["value"] <= 1.0

    for recorded_best, epochs, replaced in ((1.0, 3, False), (-1.0, 4, True)):
        checkpoint = torch.load(resume_file, weights_only=True)
        done = checkpoint["trainer"]["iteration"] // checkpoint["trainer"]["epoch_length"]
        checkpoint["best_metric"] = {"value": recorded_best, "epoch": done}
        torch.save(checkpoint, resume_file)
        before = open(model_file, "rb").read()
        result = run_bundle(BUNDLE_16, ["configs/train.json"], epochs=epochs, resume=True, **overrides)
        assert result.returncode == 0, result.stderr[-3000:]
        after = torch.load(resume_file, weights_only=True)["best_metric"]
        if replaced:
            assert open(model_file, "rb").read() != before and after["epoch"] == epochs and after["value"] > recorded_best
        else:
            assert open(model_file, "rb").read() == before and after == {"value": 1.0, "epoch": epochs - 1}


# ------------------------------------------------------------------- awkward inputs that must run; determinism
@pytest.fixture(scope="module")
def awkward_dataset(tmp_path_factory) -> str:
    """5 labelled volumes: one plain, one all-zero image, one empty label, one 8x8 in-plane (under the 16x16
    input), one stored with permuted axes (not RAS; 0.67 x 0.67 x 3.5 mm)."""
    out = str(tmp_path_factory.mktemp("awkward"))
    write_prostate_task(out, num_train=5, num_test=0, seed=7, slice_sizes=((40, 32),), num_slices=(4, 4))
    image, label = os.path.join(out, "imagesTr", "prostate_{:02d}.nii.gz"), os.path.join(out, "labelsTr", "prostate_{:02d}.nii.gz")
    _edit(image.format(1), np.zeros_like)
    _edit(label.format(2), np.zeros_like)
    for path in (image.format(3), label.format(3)):
        _crop_8x8(path)
    for path in (image.format(4), label.format(4)):
        _reorient(path)
    return out


def _train_awkward(dataset: str, root: str) -> subprocess.CompletedProcess:
    result = run_bundle(BUNDLE_16, ["configs/train.json"], bundle_root=root, dataset_dir=dataset, epochs=2, val_fold=-1, **TINY_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _logged(log: str, pattern: str) -> list[str]:
    return re.findall(pattern, log)


@pytest.mark.slow
def test_same_seed_same_training_on_cpu_also_with_awkward_inputs(awkward_dataset, tmp_path):
    """Two trainings with the same seed (set_determinism(seed=0) in train.json): the same losses, validation
    metrics and weights, bit for bit. The data hold every awkward input that must run (all-zero image, empty
    label, 8x8 image, permuted axes), each also validated, so training and validation run through them."""
    root_a = str(tmp_path / "a")
    log_a = _train_awkward(awkward_dataset, root_a).stdout
    log_b = _train_awkward(awkward_dataset, str(tmp_path / "b")).stdout
    epoch_length = torch.load(os.path.join(root_a, "models", "model_resume.pt"), weights_only=True)["trainer"]["epoch_length"]
    losses = _logged(log_a, r"Epoch: \d+/2, Iter: \d+/\d+ -- train_loss: ([\d.]+)")
    assert len(losses) == 2 * epoch_length and losses == _logged(log_b, r"Epoch: \d+/2, Iter: \d+/\d+ -- train_loss: ([\d.]+)")
    metrics = _logged(log_a, r"Epoch\[\d\] Metrics -- (.*)")
    assert len(metrics) == 2 and metrics == _logged(log_b, r"Epoch\[\d\] Metrics -- (.*)")
    for name in ("model.pt", "model_resume.pt"):
        a = torch.load(os.path.join(root_a, "models", name), weights_only=True)
        b = torch.load(str(tmp_path / "b" / "models" / name), weights_only=True)
        flat_a, flat_b = _tensors(a), _tensors(b)
        assert flat_a.keys() == flat_b.keys() and len(flat_a) > 10
        for key in flat_a:
            assert torch.equal(flat_a[key], flat_b[key]), key  # bit for bit
    steps = torch.load(os.path.join(root_a, "models", "model_resume.pt"), weights_only=True)["optimizer"]["state"]
    assert {int(state["step"]) for state in steps.values()} == {2 * epoch_length}  # the weights were trained


def _tensors(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested checkpoint, by path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {prefix: torch.tensor(float(tree))} if isinstance(tree, (int, float)) else {}


@pytest.mark.slow
def test_evaluation_scores_empty_classes_as_not_a_number_and_leaves_them_out_of_the_means(awkward_dataset, tmp_path):
    root, out = str(tmp_path / "root"), str(tmp_path / "eval")
    _structured_model(root, os.path.join(awkward_dataset, "imagesTr", "prostate_00.nii.gz"))  # masks that score above 0
    result = run_bundle(
        BUNDLE_16, ["configs/train.json", "configs/evaluate.json"], bundle_root=root, dataset_dir=awkward_dataset,
        output_dir=out, val_fold=-1, **TINY_OVERRIDES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for metric in ("val_mean_dice", "val_mean_jaccard"):
        with open(os.path.join(out, f"{metric}_raw.csv")) as f:
            rows = {os.path.basename(row["filename"]): row for row in csv.DictReader(f)}
        assert len(rows) == 5, rows
        empty = rows["prostate_02.nii.gz"]  # no PZ, no TZ in its ground truth
        assert math.isnan(float(empty["class0"])) and math.isnan(float(empty["class1"]))
        scored = [float(row[c]) for name, row in rows.items() if name != "prostate_02.nii.gz" for c in ("class0", "class1")]
        assert all(0.0 <= v <= 1.0 for v in scored) and max(scored) > 0.05, rows
        with open(os.path.join(out, f"{metric}_summary.csv")) as f:
            summary = {row["class"]: row for row in csv.DictReader(f)}
        for c in ("class0", "class1"):  # the mean over the 4 volumes that have the class
            expected = np.mean([float(rows[n][c]) for n in rows if n != "prostate_02.nii.gz"])
            assert float(summary[c]["mean"]) == pytest.approx(expected, abs=1e-4)
            assert float(summary[c]["notnans"]) == 4


# ------------------------------------------------------------------------------------------- trusted loading
class _Payload:
    """What a tampered checkpoint could carry: unpickling it would run code (here: create a file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _resume_from(path: str) -> Exception:
    from ignite.engine import Engine

    from jnet.handlers import ResumeCheckpoint

    engine = Engine(lambda engine, batch: None)
    with pytest.raises(Exception) as info:  # the checkpoint is checked when the handler attaches (config parsing)
        ResumeCheckpoint(path, {"model": torch.nn.Linear(2, 2)}, resume=True).attach(engine)
    return find_input_error(info.value)


def test_resume_refuses_missing_tampered_and_truncated_checkpoints(tmp_path):
    path, marker = str(tmp_path / "model_resume.pt"), str(tmp_path / "code_ran")
    assert "model_resume.pt: no resume checkpoint to continue from" in str(_resume_from(path))
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "extra": _Payload(marker)}, path)
    refusal = str(_resume_from(path))
    assert "model_resume.pt: refused - it holds objects other than weights" in refusal
    assert "weights_only" not in refusal and "will likely succeed" not in refusal  # no unsafe-load advice
    assert not os.path.exists(marker)  # weights_only=True: the payload never ran
    atomic_save({"model": torch.nn.Linear(2, 2).state_dict()}, path)
    _truncate(path)
    assert "model_resume.pt: not a readable checkpoint" in str(_resume_from(path))


def _amp_engine(scale_in_training: float | None, enabled: bool = True) -> Engine:
    """An engine shaped like ``SupervisedTrainer(amp=True)``: ``amp`` and a real (CPU) ``GradScaler`` as ``scaler``;
    each iteration sets the loss scale to ``scale_in_training`` (as ``GradScaler.update`` does after overflows)."""

    def step(engine, batch):
        if scale_in_training is not None:
            engine.scaler.scale(torch.ones(1))  # initialises the scale tensor, as a training step does
            engine.scaler.update(new_scale=scale_in_training)

    engine = Engine(step)
    engine.amp, engine.scaler = True, torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=enabled)
    return engine


def test_resume_restores_the_amp_loss_scale(tmp_path):
    from jnet.handlers import ResumeCheckpoint

    path, net = str(tmp_path / "model_resume.pt"), torch.nn.Linear(2, 2)
    first = _amp_engine(scale_in_training=256.0)
    ResumeCheckpoint(path, {"model": net}).attach(first)
    first.run([0, 1], max_epochs=1)
    assert torch.load(path, weights_only=True)["grad_scaler"]["scale"] == 256.0
    resumed = _amp_engine(scale_in_training=None)  # a fresh trainer starts at init_scale 1024
    ResumeCheckpoint(path, {"model": net}, resume=True).attach(resumed)
    resumed.run([0, 1], max_epochs=2)
    assert resumed.state.epoch == 2 and resumed.scaler.get_scale() == 256.0
    # a checkpoint from a run without a working scaler (AMP on a CPU-only machine saves {}) keeps the new scaler
    checkpoint = torch.load(path, weights_only=True)
    atomic_save({**checkpoint, "grad_scaler": {}}, path)
    fresh = _amp_engine(scale_in_training=None)
    ResumeCheckpoint(path, {"model": net}, resume=True).attach(fresh)
    fresh.run([0, 1], max_epochs=2)
    assert fresh.scaler.get_scale() == 1024.0


def test_resume_passes_a_gpu_loss_scale_through_a_run_without_one_and_refuses_a_tampered_one(tmp_path):
    from jnet.handlers import ResumeCheckpoint

    path, net = str(tmp_path / "model_resume.pt"), torch.nn.Linear(2, 2)
    first = _amp_engine(scale_in_training=256.0)
    ResumeCheckpoint(path, {"model": net}).attach(first)
    first.run([0, 1], max_epochs=1)
    # resumed where AMP has no working scaler (disabled): its next checkpoint keeps the state it was resumed from
    cpu_only = _amp_engine(scale_in_training=None, enabled=False)
    ResumeCheckpoint(path, {"model": net}, resume=True).attach(cpu_only)
    cpu_only.run([0, 1], max_epochs=2)
    assert torch.load(path, weights_only=True)["grad_scaler"]["scale"] == 256.0
    checkpoint = torch.load(path, weights_only=True)
    for tampered in ({"scale": 1.0}, torch.ones(3)):
        atomic_save({**checkpoint, "grad_scaler": tampered}, path)
        with pytest.raises(InputError, match="model_resume.pt: the resume checkpoint does not match this training configuration"):
            ResumeCheckpoint(path, {"model": net}, resume=True).attach(_amp_engine(scale_in_training=None))


def _calls(source: str, name: str) -> list[str]:
    """The text of every ``name(...)`` call in ``source`` (balanced parentheses)."""
    calls = []
    for match in re.finditer(re.escape(name) + r"\(", source):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0:
                break
        calls.append(source[match.start() : end + 1])
    return calls


def test_every_torch_load_in_the_package_and_configs_is_weights_only():
    from conftest import REPO

    files = glob.glob(os.path.join(REPO, "jnet", "**", "*.py"), recursive=True)
    files += glob.glob(os.path.join(REPO, "configs", "**", "*.json"), recursive=True)
    files += glob.glob(os.path.join(REPO, "bundles", "*", "configs", "*.json"))
    calls = [(path, call) for path in files for call in _calls(open(path).read(), "torch.load")]
    assert len(calls) >= 4  # the package's loaders: checkpoints (export, packing, fine-tuning, evaluation), resume, sweep
    configs = [path for path in files if path.endswith(".json") and "jnet.checkpoints.load_weights(" in open(path).read()]
    assert len(configs) >= 3 * 8  # every bundle's train, evaluate and inference configs load weights through it
    unsafe = [f"{os.path.relpath(path, REPO)}: {call}" for path, call in calls if "weights_only=True" not in call]
    assert not unsafe, unsafe


# ------------------------------------------------------------------------------------- the project's own verbs
def _verb(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jnet", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_project_verbs_refuse_bad_input_with_one_clear_line(prostate_base, tmp_path):
    missing = str(tmp_path / "no_such_dataset")
    line = _error_line(_verb("sweep", "--work_dir", str(tmp_path / "sweep"), "--dataset_dir", missing, "--resolutions", "[16]"))
    assert line == f"ERROR: dataset_dir '{missing}' does not exist or is not a folder (set --dataset_dir)."
    assert not os.path.exists(str(tmp_path / "sweep" / "sweep.json"))

    broken = _copy(prostate_base, tmp_path, "broken")
    label = sorted(glob.glob(os.path.join(broken, "labelsTr", "*.nii.gz")))[0]
    _truncate(label)
    line = _error_line(_verb("sweep", "--work_dir", str(tmp_path / "sweep2"), "--dataset_dir", broken, "--resolutions", "[16]"))
    assert line.startswith(f"ERROR: {label}: not a readable NIfTI file (") and line.endswith(f"(listed in {broken}/dataset.json)."), line

    no_model = str(tmp_path / "bundle_without_weights")
    shutil.copytree(BUNDLE_16, no_model, ignore=shutil.ignore_patterns("models", "eval"))
    line = _error_line(_verb("export", no_model, "--out_dir", str(tmp_path / "kit")))
    assert line.startswith("ERROR: ") and "model.pt" in line
    assert not os.path.exists(str(tmp_path / "kit" / "model.onnx"))
    line = _error_line(_verb("pack", no_model, "--out_dir", str(tmp_path / "dist")))
    assert "model.pt" in line

    not_a_zip = tmp_path / "bundle_v0.1.0.zip"
    not_a_zip.write_text("not a zip")
    line = _error_line(_verb("unpack", str(not_a_zip), "--out_dir", str(tmp_path / "received")))
    assert line.startswith(f"ERROR: {not_a_zip}: ")
    assert not os.path.exists(str(tmp_path / "received")) or not os.listdir(str(tmp_path / "received"))


@pytest.mark.parametrize("max_epochs, interval, validated", [(1, 2, [1]), (5, 2, [2, 4, 5]), (6, 2, [2, 4, 6]), (3, 1, [1, 2, 3])])
def test_validation_every_interval_and_after_the_last_epoch(max_epochs, interval, validated):
    """The bundles' IntervalAndLastValidation: every ``interval`` epochs as MONAI's ValidationHandler, and once more
    after the last epoch when the interval does not divide it (``--epochs 1`` of the _any bundles, which validate
    every 2nd epoch, still validates and so saves a model)."""
    from ignite.engine import Engine

    from jnet.handlers import IntervalAndLastValidation

    class Recorder:  # stands in for the evaluator: only its run(epoch) is called
        def __init__(self):
            self.epochs = []

        def run(self, epoch):
            self.epochs.append(epoch)

    trainer, recorder = Engine(lambda engine, batch: None), Recorder()
    handler = IntervalAndLastValidation(interval=interval)
    handler.validator = recorder
    handler.attach(trainer)
    trainer.run([0, 1], max_epochs=max_epochs)
    assert recorder.epochs == validated
    from jnet.handlers import validation_epochs  # what the learning-curve verb expects in a training's log

    assert validation_epochs(max_epochs, interval) == validated


def test_a_validation_interval_below_1_is_refused_before_training():
    from ignite.engine import Engine

    from jnet.handlers import IntervalAndLastValidation

    for interval in (0, -2):
        with pytest.raises(ValueError, match=f"val_interval must be at least 1, got {interval}"):
            IntervalAndLastValidation(interval=interval).attach(Engine(lambda engine, batch: None))


def test_every_bundle_validates_with_its_val_interval_and_evaluator():
    """MONAI's bundle check of the ValidationHandler's references matches its class name exactly, so it skips
    IntervalAndLastValidation: the same check here, for every bundle."""
    import glob

    from jnet.bundles.parse import bundle_parser

    bundles = sorted(glob.glob(os.path.join(BUNDLES, "*")))
    assert len(bundles) == 10
    for bundle in bundles:
        (handler,) = [h for h in bundle_parser(bundle)["train#handlers"] if "Validation" in h["_target_"]]
        assert handler["_target_"] == "jnet.handlers.IntervalAndLastValidation" and handler["epoch_level"] is True, bundle
        assert handler["interval"] == "@val_interval" and handler["validator"] == "@validate#evaluator", bundle


def test_a_validation_interval_of_0_is_one_line_from_the_bundle(prostate_base, tmp_path):
    """``--val_interval 0`` typed by a user: one ERROR line and exit 1 before any epoch, no model written."""
    result = run_bundle(BUNDLE_16, ["configs/train.json"], bundle_root=str(tmp_path / "root"), dataset_dir=_copy(prostate_base, tmp_path),
                        epochs=2, **{**TINY_OVERRIDES, "val_interval": 0})
    assert result.returncode == 1 and _error_line(result) == "ERROR: --val_interval must be at least 1, got 0."
    assert not os.path.exists(tmp_path / "root" / "models" / "model.pt")
