"""Hospital-shaped inputs (issue 17): a case as separate sequence files on their own grids (T2 + a coarser ADC),
`.nii` in imagesTs, a batch with a case whose grids cannot be joined, a label off its image's grid, an oblique
volume - through `python -m monai.bundle run inference.json` and the standalone runner, with real NIfTI files."""

from __future__ import annotations

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged
from scipy.ndimage import map_coordinates

from conftest import BUNDLE_16, TINY_OVERRIDES, run_bundle
from jnet import processing
from jnet.bundles.parse import bundle_parser
from jnet.data import CheckedNibabelReader
from jnet.deploy.kit import RUNNER_NAME, export_kit
from jnet.tools.synthetic.prostate import make_prostate_case, write_prostate_task
from test_standalone import balance_final_bias, load_mask, run_runner

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(900)]
# a 2x coarser in-plane grid whose voxel centres sit at the centres of 2x2 blocks of the fine one
COARSER = np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def _rotation_z(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return rotation


def _scipy_onto(volume: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, shape) -> np.ndarray:
    """An independent reference: scipy's trilinear ``map_coordinates`` at the target voxels (zeros outside)."""
    mapping = np.linalg.inv(affine) @ target_affine
    points = mapping[:3, :3] @ np.indices(shape).reshape(3, -1) + mapping[:3, 3:]
    return map_coordinates(volume, points, order=1, mode="grid-constant", cval=0.0, prefilter=False).reshape(shape)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """One synthetic prostate study as a scanner exports it: T2 (160x160x6) and ADC on a 2x coarser in-plane grid,
    in separate files; and the same data pre-stacked on the T2 grid (the ADC brought there by scipy)."""
    out = tmp_path_factory.mktemp("study")
    case = make_prostate_case(np.random.default_rng(11), slice_sizes=((160, 160),), num_slices=(6, 6))
    t2, adc_fine = case.image[..., 0], case.image[..., 1]
    adc = adc_fine.reshape(80, 2, 80, 2, 6).mean(axis=(1, 3))
    adc_affine = case.affine @ COARSER
    paths = {"t2": str(out / "patient1_t2.nii.gz"), "adc": str(out / "patient1_adc.nii.gz"), "stacked": str(out / "patient1_stacked.nii.gz")}
    nib.save(nib.Nifti1Image(t2, case.affine), paths["t2"])
    nib.save(nib.Nifti1Image(adc, adc_affine), paths["adc"])
    adc_on_t2 = _scipy_onto(adc, adc_affine, case.affine, t2.shape)
    nib.save(nib.Nifti1Image(np.stack([t2, adc_on_t2], -1).astype(np.float32), case.affine), paths["stacked"])
    return {**paths, "affine": case.affine, "shape": t2.shape, "dir": str(out)}


@pytest.fixture(scope="module")
def balanced_model(trained_root, study, tmp_path_factory) -> dict:
    """The 1-epoch tiny model with its final bias balanced on the study (masks with every class), and its kit."""
    root = tmp_path_factory.mktemp("balanced")
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    parser["features"] = 4
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(os.path.join(trained_root, "models", "model.pt"), weights_only=True))
    kit = str(root / "kit")
    export_kit(BUNDLE_16, kit, os.path.join(trained_root, "models", "model.pt"), overrides={"features": 4})
    params = processing.load_params(os.path.join(kit, "deploy.json"))
    volume, affine = processing.load_volume(study["stacked"], 2)
    slices, _ = processing.preprocess(processing.reorient(volume, affine)[0], params)
    (root / "models").mkdir()
    torch.save(balance_final_bias(network, torch.as_tensor(slices)).state_dict(), root / "models" / "model.pt")
    shutil.rmtree(kit)
    export_kit(BUNDLE_16, kit, str(root / "models" / "model.pt"), overrides={"features": 4})
    return {"root": str(root), "kit": kit}


def _infer(model: dict, input_files, out_dir, **overrides):
    return run_bundle(BUNDLE_16, ["configs/inference.json"], bundle_root=model["root"], input_files=json.dumps(input_files),
                      output_dir=str(out_dir), num_workers=0, features=4, **overrides)


# ------------------------------------------------------------------------------------------- the grids, in numpy
def test_resampling_equals_scipy_for_axis_aligned_and_rotated_grids():
    rng = np.random.default_rng(0)
    volume = rng.random((2, 20, 24, 10)).astype(np.float32)
    source = np.diag([1.5, 1.5, 3.0, 1.0])
    source[:3, 3] = [-10, 5, 2]
    for target in (np.diag([1.1, 1.3, 2.0, 1.0]) + np.array([[0, 0, 0, -12], [0, 0, 0, 3], [0, 0, 0, -1], [0, 0, 0, 0]]),
                   _rotation_z(20) @ np.diag([1.2, 1.1, 2.5, 1.0])):
        out = processing.resample_to_grid(volume, source, target, (25, 22, 12), order=1)
        expected = np.stack([_scipy_onto(v, source, target, (25, 22, 12)) for v in volume])
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert np.abs(out).sum() > 100  # the grids overlap: not all zeros
    labels = rng.integers(0, 3, (1, 20, 24, 10)).astype(np.uint8)
    nearest = processing.resample_to_grid(labels, source, source, (20, 24, 10), order=0)
    assert nearest.dtype == np.uint8 and np.array_equal(nearest, labels)


def test_obliquity_is_the_rotation_angle_and_zero_for_flips_and_permutations():
    assert processing.obliquity_degrees(_rotation_z(20) @ np.diag([0.5, 0.5, 3.0, 1.0])) == pytest.approx(20.0)
    assert processing.obliquity_degrees(np.diag([-0.5, 0.5, 3.0, 1.0])[[1, 0, 2, 3]]) == 0.0


def test_the_bundle_reader_joins_separate_sequences_on_the_first_files_grid(study):
    loaded = LoadImaged("image", reader=CheckedNibabelReader, ensure_channel_first=True, image_only=True)({"image": [study["t2"], study["adc"]]})
    image = loaded["image"]
    stacked = nib.load(study["stacked"])
    assert tuple(image.shape) == (2, *study["shape"])
    np.testing.assert_allclose(image.affine.numpy(), study["affine"], atol=1e-5)
    # float32 weights and NIfTI-stored (float32) affines: equal to scipy within 1e-4 relative
    np.testing.assert_allclose(image.numpy(), np.moveaxis(np.asarray(stacked.dataobj), -1, 0), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------- end to end: bundle and runner
def test_separate_sequences_give_the_mask_of_the_prestacked_case_in_the_bundle_and_the_runner(balanced_model, study, tmp_path):
    """T2 + a coarser ADC as two files: the bundle and the runner write the mask on the T2 grid, equal (>= 99.9 %
    of voxels; the only difference is our resampling against scipy's, float32) to the mask of the same data
    pre-stacked on that grid."""
    out = tmp_path / "bundle"
    result = _infer(balanced_model, [[study["t2"], study["adc"]], study["stacked"]], out)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert f"{study['adc']} (80x80x6 voxels, " in log and f"resampled linearly onto the grid of {study['t2']} (160x160x6 voxels" in log
    separate, affine = load_mask(out / "patient1_t2_seg.nii.gz")
    prestacked, _ = load_mask(out / "patient1_stacked_seg.nii.gz")
    assert separate.shape == study["shape"] and np.allclose(affine, study["affine"], atol=1e-5)
    assert len(np.unique(prestacked)) == 3 and (separate == prestacked).mean() >= 0.999
    runner_out = tmp_path / "runner"
    kit = balanced_model["kit"]
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), f"{study['t2']},{study['adc']}",
                        "--output_dir", runner_out, "--threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.startswith(f"INFO: {study['adc']} (80x80x6 voxels")
    mask, runner_affine = load_mask(runner_out / "patient1_t2_seg.nii.gz")
    assert np.allclose(runner_affine, study["affine"], atol=1e-5) and (mask == separate).mean() >= 0.999


def test_a_case_whose_grids_cannot_be_joined_is_one_line_and_the_batch_goes_on(balanced_model, study, tmp_path):
    far = str(tmp_path / "patient2_adc.nii.gz")
    image = nib.load(study["adc"])
    moved = image.affine.copy()
    moved[:3, 3] += 1000.0
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), moved), far)
    out = tmp_path / "bundle"
    result = _infer(balanced_model, [[study["t2"], far], study["stacked"]], out)
    assert result.returncode == 1
    assert f"{far}: its grid does not overlap the grid of {study['t2']} in world coordinates" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR: 1 of 2 input(s) skipped (1 processed)")
    assert sorted(os.listdir(out)) == ["patient1_stacked_seg.nii.gz"]  # the good case is written
    runner_out = tmp_path / "runner"
    kit = balanced_model["kit"]
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), f"{study['t2']},{far}", study["stacked"],
                        "--output_dir", runner_out, "--threads", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"ERROR: {far}: its grid does not overlap the grid of {study['t2']} in world coordinates" in result.stderr
    assert sorted(os.listdir(runner_out)) == ["patient1_stacked_seg.nii.gz"]


def test_plain_nii_in_imagesTs_is_segmented(balanced_model, study, tmp_path):
    data = tmp_path / "Task05"
    (data / "imagesTs").mkdir(parents=True)
    image = nib.load(study["stacked"])
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine), str(data / "imagesTs" / "case_a.nii"))
    shutil.copy(study["stacked"], data / "imagesTs" / "case_b.nii.gz")
    out = tmp_path / "out"
    result = run_bundle(BUNDLE_16, ["configs/inference.json"], bundle_root=balanced_model["root"], dataset_dir=str(data),
                        output_dir=str(out), num_workers=0, features=4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["case_a_seg.nii.gz", "case_b_seg.nii.gz"]
    a, _ = load_mask(out / "case_a_seg.nii.gz")
    b, _ = load_mask(out / "case_b_seg.nii.gz")
    assert np.array_equal(a, b)


def test_an_oblique_volume_gets_one_warning_with_its_angle(balanced_model, study, tmp_path):
    image = nib.load(study["stacked"])
    centre = image.affine[:3, :3] @ (np.array(image.shape[:3]) - 1) / 2 + image.affine[:3, 3]
    about_centre = np.eye(4)
    about_centre[:3, 3] = centre
    rotated = about_centre @ _rotation_z(20) @ np.linalg.inv(about_centre) @ image.affine
    path = str(tmp_path / "oblique.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), rotated), path)
    result = _infer(balanced_model, [path], tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "oblique acquisition" in line]
    assert len(warnings) == 1 and f"{path}: oblique acquisition - the voxel axes are 20.0 degrees off the scanner axes" in warnings[0]
    _, affine = load_mask(tmp_path / "out" / "oblique_seg.nii.gz")
    np.testing.assert_allclose(affine, rotated, atol=1e-4)  # the mask is on the input's (oblique) grid
    kit = balanced_model["kit"]
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), path, "--output_dir", tmp_path / "runner")
    assert result.returncode == 0 and f"WARNING: {path}: oblique acquisition - the voxel axes are 20.0 degrees" in result.stderr
    # the other choice: resampled onto the nearest axis-aligned grid, where the mask is written (bundle and runner)
    aligned_affine, aligned_shape = processing.axis_aligned_grid(rotated, image.shape[:3])
    result = _infer(balanced_model, [path], tmp_path / "aligned", oblique="axis_aligned")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "oblique acquisition" in line]
    assert len(warnings) == 1 and "20.0 degrees off the scanner axes; resampled (trilinear) onto the nearest axis-aligned grid" in warnings[0]
    aligned, affine = load_mask(tmp_path / "aligned" / "oblique_seg.nii.gz")
    assert aligned.shape == aligned_shape and processing.obliquity_degrees(affine) == 0.0
    np.testing.assert_allclose(affine, aligned_affine, atol=1e-4)
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), path, "--output_dir", tmp_path / "runner_aligned",
                        "--oblique", "axis_aligned")
    assert result.returncode == 0 and "resampled (trilinear) onto the nearest axis-aligned grid" in result.stderr
    runner_mask, runner_affine = load_mask(tmp_path / "runner_aligned" / "oblique_seg.nii.gz")
    np.testing.assert_allclose(runner_affine, aligned_affine, atol=1e-4)
    assert len(np.unique(aligned)) > 1 and (runner_mask == aligned).mean() >= 0.999


def test_the_axis_aligned_grid_covers_the_oblique_one_and_resampling_onto_it_keeps_world_positions():
    oblique = _rotation_z(20) @ np.diag([0.8, 0.7, 3.0, 1.0])
    oblique[:3, 3] = [-20.0, 5.0, 10.0]
    shape = (40, 36, 6)
    affine, new_shape = processing.axis_aligned_grid(oblique, shape)
    assert processing.obliquity_degrees(affine) == 0.0
    np.testing.assert_allclose(processing.spacing(affine), [0.8, 0.7, 3.0])
    old_corners, new_corners = processing.grids.world_corners(oblique, shape, 0.5), processing.grids.world_corners(affine, new_shape, 0.5)
    assert (new_corners.min(0) <= old_corners.min(0) + 1e-6).all() and (new_corners.max(0) >= old_corners.max(0) - 1e-6).all()
    assert processing.axis_aligned_grid(np.diag([-0.5, 0.5, 3.0, 1.0]), shape) == (pytest.approx(np.diag([-0.5, 0.5, 3.0, 1.0])), shape)

    def field(points):  # a smooth function of world position, linear along z (trilinear is exact there)
        return np.sin(points[..., 0] / 9.0) + np.cos(points[..., 1] / 7.0) + points[..., 2] / 30.0

    def world(grid_affine, grid_shape):
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid_shape], indexing="ij"), -1).astype(np.float64)
        return ijk @ grid_affine[:3, :3].T + grid_affine[:3, 3]

    volume = field(world(oblique, shape))[None].astype(np.float32)
    resampled, out_affine = processing.to_axis_aligned(volume, oblique)
    assert resampled.shape == (1,) + new_shape and np.allclose(out_affine, affine)
    inside = processing.resample_to_grid(np.ones_like(volume), oblique, affine, new_shape, order=1)[0] > 0.999
    assert inside.mean() > 0.5  # most of the new grid lies inside the oblique one
    np.testing.assert_allclose(resampled[0][inside], field(world(affine, new_shape))[inside], atol=0.01)


def test_training_refuses_a_label_off_its_images_grid_before_the_first_epoch(tmp_path):
    data = str(tmp_path / "Task05")
    write_prostate_task(data, num_train=3, num_test=0, seed=2, slice_sizes=((64, 64),), num_slices=(3, 3))
    label = os.path.join(data, "labelsTr", "prostate_01.nii.gz")
    image = nib.load(label)
    shifted = image.affine.copy()
    shifted[1, 3] += 1.5
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted), label)
    root = tmp_path / "root"
    result = run_bundle(BUNDLE_16, ["configs/train.json"], bundle_root=str(root), dataset_dir=data, epochs=1, **TINY_OVERRIDES)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"ERROR: {label}: the label's affine differs from its image's ({os.path.join(data, 'imagesTr', 'prostate_01.nii.gz')})")
    assert "1.50 mm apart" in line
    assert not (root / "models").exists() or not os.listdir(root / "models")


# ----------------------------------------------------------------------------------------------- DICOM series in
def write_dicom_series(volume: np.ndarray, affine: np.ndarray, folder: str, series_number: int = 1, seed: int = 0) -> str:
    """``volume`` (H, W, D) with RAS ``affine`` as an MR DICOM series (one file per slice, int16 with a rescale
    slope, files named in shuffled order), as a scanner exports it."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    os.makedirs(folder, exist_ok=True)
    lps = processing.dicom.LPS_TO_RAS @ affine
    column_spacing, row_spacing = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    low, high = float(volume.min()), float(volume.max())
    slope = (high - low) / 60000.0 or 1.0
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    for k in np.random.default_rng(seed).permutation(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "MR", "TEST", study_uid, series_uid
        ds.SeriesNumber, ds.InstanceNumber = series_number, int(k) + 1
        ds.FrameOfReferenceUID, ds.PatientName, ds.StudyDate, ds.StudyTime = frame_uid, "Test^Patient", "20261202", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID, ds.PatientBirthDate, ds.PatientSex = "A1", "", "1", "", "O"
        ds.ImageOrientationPatient = [float(v) for v in (*(lps[:3, 0] / column_spacing), *(lps[:3, 1] / row_spacing))]
        ds.ImagePositionPatient = [float(v) for v in lps[:3, 3] + k * lps[:3, 2]]
        ds.PixelSpacing = [float(row_spacing), float(column_spacing)]
        ds.SliceThickness = float(np.linalg.norm(lps[:3, 2]))
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{low + 30000 * slope:.10g}"
        stored = np.round((volume[:, :, k].T - float(ds.RescaleIntercept)) / float(ds.RescaleSlope)).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.save_as(os.path.join(folder, f"IM{np.random.default_rng([seed, int(k)]).integers(1e6):06d}"), enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def dicom_study(study, tmp_path_factory) -> dict:
    """The study's T2 and ADC as two DICOM series folders (ADC on its coarser grid)."""
    out = tmp_path_factory.mktemp("dicom")
    t2, adc = nib.load(study["t2"]), nib.load(study["adc"])
    return {
        "t2": write_dicom_series(np.asarray(t2.dataobj), t2.affine, str(out / "t2_series"), 1, seed=1),
        "adc": write_dicom_series(np.asarray(adc.dataobj), adc.affine, str(out / "adc_series"), 2, seed=2),
    }


def test_a_dicom_series_reads_with_the_geometry_it_was_written_with_and_as_monai_reads_it(study, dicom_study):
    from monai.data import PydicomReader

    t2 = nib.load(study["t2"])
    voxels, affine = processing.read_dicom_series(dicom_study["t2"])
    np.testing.assert_allclose(affine, t2.affine, atol=1e-4)
    slope = float(__import__("pydicom").dcmread(os.path.join(dicom_study["t2"], sorted(os.listdir(dicom_study["t2"]))[0])).RescaleSlope)
    np.testing.assert_allclose(voxels, np.asarray(t2.dataobj), atol=slope)  # int16 storage: within one step
    shape, header_affine = processing.dicom_series_header(dicom_study["t2"])
    assert shape == t2.shape and np.allclose(header_affine, affine)
    reader = PydicomReader()  # MONAI's own reader, an independent implementation (LPS -> RAS by default)
    monai_voxels, monai_meta = reader.get_data(reader.read(dicom_study["t2"]))
    np.testing.assert_allclose(monai_meta["affine"], affine, atol=1e-4)
    np.testing.assert_allclose(monai_voxels, voxels, atol=1e-3)


def test_dicom_series_give_the_mask_of_the_same_volumes_as_nifti_in_the_bundle_and_the_runner(balanced_model, study, dicom_study, tmp_path):
    out = tmp_path / "bundle"
    result = _infer(balanced_model, [[dicom_study["t2"], dicom_study["adc"]], [study["t2"], study["adc"]]], out)
    assert result.returncode == 0, result.stderr[-3000:]
    from_dicom, affine = load_mask(out / "t2_series_seg.nii.gz")
    from_nifti, nifti_affine = load_mask(out / "patient1_t2_seg.nii.gz")
    assert from_dicom.shape == study["shape"] and np.allclose(affine, study["affine"], atol=1e-4) and np.allclose(affine, nifti_affine, atol=1e-4)
    assert len(np.unique(from_nifti)) == 3 and (from_dicom == from_nifti).mean() >= 0.999
    kit = balanced_model["kit"]
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), f"{dicom_study['t2']},{dicom_study['adc']}",
                        "--output_dir", tmp_path / "runner", "--threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    mask, runner_affine = load_mask(tmp_path / "runner" / "t2_series_seg.nii.gz")
    assert np.allclose(runner_affine, study["affine"], atol=1e-4) and (mask == from_dicom).mean() >= 0.999


def test_a_folder_of_two_series_or_no_dicom_is_one_clear_line(dicom_study, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(dicom_study["t2"], mixed)
    for name in os.listdir(dicom_study["adc"]):
        shutil.copy(os.path.join(dicom_study["adc"], name), mixed / f"adc_{name}")
    with pytest.raises(processing.RunnerError, match=r"mixed: holds 2 DICOM series"):
        processing.read_dicom_series(str(mixed))
    from jnet.data.io.checks import check_case_headers
    from jnet.errors import InputError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: is a folder with no DICOM files"):
        check_case_headers([str(empty), dicom_study["adc"]], 2)


def test_one_slice_grids_on_the_same_plane_overlap():
    t2, adc = np.diag([0.5, 0.5, 3.0, 1.0]), np.diag([1.0, 1.0, 3.0, 1.0])
    adc[:3, 3] = [0.25, 0.25, 0.0]  # 2x2 blocks of the T2 grid
    assert processing.overlap_fraction(t2, (10, 10, 1), adc, (5, 5, 1)) == pytest.approx(1.0)
    joined, notes = processing.join_sequences([np.ones((1, 10, 10, 1)), np.ones((1, 5, 5, 1))], [t2, adc], ["t2", "adc"])
    assert joined.shape == (2, 10, 10, 1) and len(notes) == 1


def test_uid_named_series_keep_their_names_and_one_name_twice_is_one_line(balanced_model, study, dicom_study, tmp_path):
    """Series folders named by their UID (dots) get masks named by the whole UID, in the bundle and the runner; two
    cases whose masks would share a name (p1/T2, p2/T2) write the first, name the second, and exit non-zero."""
    series = [str(tmp_path / "1.2.840.113619.2.1"), str(tmp_path / "1.2.840.113619.2.2")]
    for folder in series:
        shutil.copytree(dicom_study["t2"], folder)
    (tmp_path / "p1").mkdir()
    (tmp_path / "p2").mkdir()
    twins = [str(tmp_path / "p1" / "case.nii.gz"), str(tmp_path / "p2" / "case.nii.gz")]
    for twin in twins:
        shutil.copy(study["stacked"], twin)
    out = tmp_path / "bundle"
    result = _infer(balanced_model, [[series[0], dicom_study["adc"]], [series[1], dicom_study["adc"]], *twins], out)
    assert result.returncode == 1
    assert f"{twins[1]}: its mask would be written as case_seg.nii.gz over the mask of {twins[0]}" in result.stderr
    assert sorted(os.listdir(out)) == ["1_2_840_113619_2_1_seg.nii.gz", "1_2_840_113619_2_2_seg.nii.gz", "case_seg.nii.gz"]
    kit = balanced_model["kit"]
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), f"{series[0]},{dicom_study['adc']}", *twins,
                        "--output_dir", tmp_path / "runner", "--threads", "1")
    assert result.returncode == 1 and f"ERROR: {twins[1]}: its mask would be written as case_seg.nii.gz over the mask of {twins[0]}" in result.stderr
    assert sorted(os.listdir(tmp_path / "runner")) == ["1_2_840_113619_2_1_seg.nii.gz", "case_seg.nii.gz"]


def test_a_dicom_series_mask_is_also_a_dicom_seg_referencing_the_series(balanced_model, study, dicom_study, tmp_path):
    """--dicom_seg True: beside the NIfTI mask, <series>_seg.dcm - a DICOM Segmentation whose frames reference the
    source instances and whose segments decode to the NIfTI mask, voxel for voxel."""
    import highdicom as hd
    import pydicom

    out = tmp_path / "out"
    result = _infer(balanced_model, [[dicom_study["t2"], dicom_study["adc"]], [study["t2"], study["adc"]]], out, dicom_seg=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["patient1_t2_seg.nii.gz", "t2_series_seg.dcm", "t2_series_seg.nii.gz"]  # NIfTI input: no SEG
    mask, _ = load_mask(out / "t2_series_seg.nii.gz")
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(out / "t2_series_seg.dcm"))
    sources = processing.dicom_series_datasets(dicom_study["t2"])
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in sources}
    labels = {desc.SegmentLabel: desc.SegmentNumber for desc in seg.SegmentSequence}
    assert set(labels) == {"peripheral zone", "transition zone"}  # both present in the balanced model's mask
    for name, code in (("peripheral zone", 1), ("transition zone", 2)):
        volume = seg.get_volume(segment_numbers=[labels[name]], combine_segments=True, allow_missing_positions=True)
        frames = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID for ds in sources], segment_numbers=[labels[name]],
            assert_missing_frames_are_empty=True, combine_segments=True,
        )  # (slices, rows, columns), in the order the series is stacked
        np.testing.assert_array_equal(frames > 0, np.transpose(mask == code, (2, 1, 0)))
        assert volume is not None


def test_a_dataset_json_entry_listing_separate_sequences_trains_on_the_joined_case(study, tmp_path):
    """dataset.json entries may list a case's sequence files ("image": ["t2", "adc"]): the bundle's own training
    pre-processing gives the volume of the pre-stacked case (within float32 resampling tolerance), on the T2 grid."""
    from monai.transforms import Compose

    from jnet.data import labelled_datalist

    data = tmp_path / "Task05"
    for sub in ("imagesTr", "labelsTr"):
        (data / sub).mkdir(parents=True)
    shape = study["shape"]
    label = np.zeros(shape, np.uint8)
    label[60:100, 60:100, :] = 2
    label[50:60, 60:100, :] = 1
    for name in ("separate", "stacked", "third"):
        nib.save(nib.Nifti1Image(label, study["affine"]), str(data / "labelsTr" / f"{name}.nii.gz"))
    shutil.copy(study["t2"], data / "imagesTr" / "separate_t2.nii.gz")
    shutil.copy(study["adc"], data / "imagesTr" / "separate_adc.nii.gz")
    shutil.copy(study["stacked"], data / "imagesTr" / "stacked.nii.gz")
    shutil.copy(study["stacked"], data / "imagesTr" / "third.nii.gz")
    training = [
        {"image": ["./imagesTr/separate_t2.nii.gz", "./imagesTr/separate_adc.nii.gz"], "label": "./labelsTr/separate.nii.gz"},
        {"image": "./imagesTr/stacked.nii.gz", "label": "./labelsTr/stacked.nii.gz"},
        {"image": "./imagesTr/third.nii.gz", "label": "./labelsTr/third.nii.gz"},
    ]
    (data / "dataset.json").write_text(json.dumps({"training": training, "labels": {"0": "bg", "1": "PZ", "2": "TZ"}}))
    items = labelled_datalist(str(data), "decathlon", "all", 3, 0, 0, 2)
    parser = bundle_parser(BUNDLE_16)
    transform = Compose(parser.get_parsed_content("volume_transforms"))
    separate, stacked = (transform(dict(item)) for item in items[:2])
    assert isinstance(items[0]["image"], list) and len(items[0]["image"]) == 2
    assert separate["image"].shape == stacked["image"].shape == (2, 256, 256, shape[2])
    np.testing.assert_allclose(separate["image"].numpy(), stacked["image"].numpy(), rtol=1e-3, atol=1e-3)
    assert torch.equal(separate["label"], stacked["label"])


# ------------------------------------------------------------------- sequences found by their names (MONAI Label)
def test_sequence_files_are_found_by_their_suffixes_and_an_incomplete_case_is_named(tmp_path):
    for name in ("p1_t2.nii.gz", "p1_adc.nii", "p2_t2.nii.gz", "p3.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    suffixes = ["_t2", "_adc"]
    files = sorted(str(f) for f in tmp_path.iterdir())
    cases, problems = processing.group_sequences(files, suffixes)
    assert cases == [[str(tmp_path / "p1_t2.nii.gz"), str(tmp_path / "p1_adc.nii")], str(tmp_path / "p2_t2.nii.gz"), str(tmp_path / "p3.nii.gz")]
    assert problems == []  # p2 has no ADC beside it: a one-file case as before (its channel check names it)
    (tmp_path / "p4_flair.nii.gz").write_bytes(b"")
    (tmp_path / "p4_t1.nii.gz").write_bytes(b"")
    brats = ["_flair", "_t1", "_t1ce", "_t2"]
    with pytest.raises(processing.RunnerError, match=r"p4_flair.nii.gz: the case's other sequence file\(s\) p4_t1ce.nii.gz, p4_t2.nii.gz are missing"):
        processing.sequence_files(str(tmp_path / "p4_flair.nii.gz"), brats)
    listed = [str(tmp_path / "p4_flair.nii.gz"), str(tmp_path / "p4_t1.nii.gz"), str(tmp_path / "p1_t2.nii.gz")]
    cases, problems = processing.group_sequences(listed, brats)
    assert [p for p, _ in problems] == [str(tmp_path / "p4_flair.nii.gz")]  # one line for the incomplete case
    assert cases == [str(tmp_path / "p1_t2.nii.gz")]  # its T1 is not a case of its own
    with pytest.raises(processing.RunnerError, match="must be a list of file-name suffixes"):
        processing.group_sequences(listed, "_t2")


def test_a_folder_of_separate_sequence_files_is_segmented_case_by_case_in_the_bundle_and_the_runner(balanced_model, study, tmp_path):
    """``patient1_t2`` + ``patient1_adc`` in one folder are one case (the bundle's sequence_suffixes), with the mask
    of the explicit two-file case; ``patient3_t2`` without its ADC is one line and the batch goes on."""
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    for key in ("t2", "adc"):
        shutil.copy(study[key], folder / os.path.basename(study[key]))
    shutil.copy(study["t2"], folder / "patient3_t2.nii.gz")  # its ADC is missing
    (folder / "patient4_adc.nii.gz").write_bytes(open(study["adc"], "rb").read())  # an ADC whose T2 is missing
    out = tmp_path / "bundle"
    result = _infer(balanced_model, [[study["t2"], study["adc"]]], tmp_path / "explicit")
    assert result.returncode == 0, result.stderr[-3000:]
    explicit, _ = load_mask(tmp_path / "explicit" / "patient1_t2_seg.nii.gz")
    result = run_bundle(BUNDLE_16, ["configs/inference.json"], bundle_root=balanced_model["root"], input_files=str(folder / "*.nii.gz"),
                        output_dir=str(out), num_workers=0, features=4)
    assert result.returncode == 1
    assert "patient3_t2.nii.gz: image has a 3D volume" in result.stderr or "patient3_t2.nii.gz: image has 1 channel" in result.stderr, result.stderr[-2000:]
    assert "patient4_adc.nii.gz" in result.stderr
    assert sorted(os.listdir(out)) == ["patient1_t2_seg.nii.gz"]
    grouped, affine = load_mask(out / "patient1_t2_seg.nii.gz")
    assert np.array_equal(grouped, explicit) and np.allclose(affine, study["affine"], atol=1e-5)
    kit = balanced_model["kit"]
    runner_out = tmp_path / "runner"
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), str(folder), "--output_dir", runner_out, "--threads", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "patient3_t2.nii.gz: image has 1 channel(s), the model expects 2" in result.stderr
    assert sorted(os.listdir(runner_out)) == ["patient1_t2_seg.nii.gz"]
    mask, _ = load_mask(runner_out / "patient1_t2_seg.nii.gz")
    assert (mask == explicit).mean() >= 0.999


def test_the_bundle_reader_reads_a_reference_sequence_as_its_whole_case(study):
    """What MONAI Label does: one path, the T2's; the reader with the bundle's sequence_suffixes joins the ADC."""
    reader = CheckedNibabelReader(sequence_suffixes=["_t2", "_adc"])
    grouped = LoadImaged("image", reader=reader, ensure_channel_first=True, image_only=True)({"image": study["t2"]})["image"]
    explicit = LoadImaged("image", reader=CheckedNibabelReader, ensure_channel_first=True, image_only=True)({"image": [study["t2"], study["adc"]]})["image"]
    assert tuple(grouped.shape) == (2, *study["shape"]) and torch.equal(grouped.as_tensor(), explicit.as_tensor())
    assert grouped.meta["filename_or_obj"] == study["t2"]
