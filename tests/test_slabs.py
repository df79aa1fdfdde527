"""Slab-wise processing (issue 17, memory) computes what the whole-volume path computes."""

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
