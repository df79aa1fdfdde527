"""Slab-wise processing (issue 17, memory) computes what the whole-volume path computes."""

import os

import numpy as np
import pytest

from jnet.processing import normalize, normalize_volume, preprocess, resize_slices
from jnet.processing.resample import SLAB_SLICES


@pytest.mark.parametrize("mode,anti_aliasing", [("linear", True), ("linear", False), ("area", False), ("nearest-exact", False)])
def test_a_volume_resized_a_slab_at_a_time_equals_each_slice_resized_alone(mode, anti_aliasing):
    volume = np.random.default_rng(0).normal(size=(2, 48, 40, 2 * SLAB_SLICES + 5)).astype(np.float32)
    slab_wise = resize_slices(volume, 24, mode, anti_aliasing)
    one_by_one = np.concatenate([resize_slices(volume[..., i : i + 1], 24, mode, anti_aliasing) for i in range(volume.shape[3])], axis=3)
    assert slab_wise.shape == (2, 24, 24, volume.shape[3])
    np.testing.assert_array_equal(slab_wise, one_by_one)


def test_the_slab_wise_mean_and_std_are_numpys_to_float_precision():
    volume = (np.random.default_rng(1).normal(size=(2, 30, 30, 50)) * 300 + 1200).astype(np.float32)
    out = normalize(volume, channel_wise=True)
    for c in range(2):
        expected = (volume[c] - volume[c].mean(dtype=np.float64)) / volume[c].std(dtype=np.float64)
        np.testing.assert_allclose(out[c], expected, rtol=0, atol=1e-5)
    assert abs(out[0].mean()) < 1e-5 and abs(out[0].std() - 1) < 1e-5


def test_preprocessing_slabs_of_a_normalised_volume_equals_preprocessing_it_whole():
    params = {"normalize": {"channel_wise": True}, "output_size": 64, "input_size": 16, "lowres_mode": "area",
              "grid": {"type": "resize", "anti_aliasing": True}}
    volume = np.random.default_rng(2).normal(size=(2, 90, 80, 45)).astype(np.float32) + 5
    whole, state = preprocess(volume, params)
    normalised = normalize_volume(volume.copy(), params, in_place=True)
    slabs = [preprocess(normalised[..., i : i + 32], params, normalized=True) for i in range(0, 45, 32)]
    np.testing.assert_allclose(np.concatenate([s for s, _ in slabs]), whole, rtol=0, atol=1e-6)
    assert all(s == state for _, s in slabs)


@pytest.mark.parametrize("dtype,slope_inter", [(np.float32, None), (">i2", None), (np.int16, (2.0, 1.0))])
def test_a_nii_gz_decompressed_into_its_array_reads_what_nibabel_reads(tmp_path, dtype, slope_inter):
    import nibabel as nib

    from jnet.processing import read_voxels

    voxels = (np.arange(40 * 30 * 9).reshape(40, 30, 9) % 301).astype(dtype)
    image = nib.Nifti1Image(voxels, np.diag([0.5, 0.5, 3.0, 1.0]))
    if slope_inter:
        image.header.set_slope_inter(*slope_inter)
    path = str(tmp_path / "volume.nii.gz")
    nib.save(image, path)
    loaded = nib.load(path)
    np.testing.assert_array_equal(read_voxels(loaded, path), np.asanyarray(loaded.dataobj))


def test_a_truncated_nii_gz_is_one_line_naming_the_file(tmp_path):
    import nibabel as nib

    from jnet.processing import RunnerError, load_volume

    path = str(tmp_path / "volume.nii.gz")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(40, 30, 9)).astype(np.float32), np.eye(4)), path)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(RunnerError, match=r"volume\.nii\.gz: cannot be read as NIfTI \("):
        load_volume(path, 1)


def test_the_runner_segments_a_large_volume_within_twice_its_size_plus_a_constant(tmp_path):
    """Through the bench's own measurement (``python -m jnet bench_memory``), at a depth that fits CI's time: the
    runner's peak RSS grows by less than 1.6 MB per MB of decompressed input (the bound is 2; it reads the file
    once, works on a view of it and segments a slab of slices at a time)."""
    from jnet.tools.bench.volume_memory import bench_volume_memory

    (runner,) = bench_volume_memory(str(tmp_path), depth=192, programs=("runner",))
    assert runner.input_mb == pytest.approx(384.0) and runner.small_input_mb == pytest.approx(128.0)
    assert runner.peak_mb > runner.small_peak_mb > 100  # both really measured
    assert 0.5 < runner.slope < 1.6, runner
    assert os.path.isfile(tmp_path / "runner_192" / "volume_192_seg.nii.gz")
