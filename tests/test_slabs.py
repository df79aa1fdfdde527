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
    c_ordered = read_voxels(loaded, path, order="C")  # one in-plane image at a time into a C-ordered array
    np.testing.assert_array_equal(c_ordered, np.asanyarray(loaded.dataobj))
    assert c_ordered.flags.c_contiguous or slope_inter  # a scaled file is read by nibabel (its own order)


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


def test_the_bundle_segments_a_large_volume_within_twice_its_size_plus_a_constant(tmp_path):
    """The same measurement for ``python -m monai.bundle run inference.json``: under 1.6 MB of peak RSS per MB of
    input (bound 2; read once into a C-ordered array, reoriented and normalised in place, resized and inverted a
    slab of slices at a time into a uint8 mask)."""
    from jnet.tools.bench.volume_memory import bench_volume_memory

    (bundle,) = bench_volume_memory(str(tmp_path), depth=192, programs=("bundle",))
    assert bundle.peak_mb > bundle.small_peak_mb > 100
    assert 0.5 < bundle.slope < 1.6, bundle
    assert os.path.isfile(tmp_path / "bundle_192" / "volume_192_seg.nii.gz")


# ------------------------------------------------------------------------------------- the bundle's inference pipeline
def _pipelines(bundle: str):
    """The bundle's parsed inference pre-processing and its first post-processing step, and an old-style copy of the
    pre-processing (no step in place)."""
    from monai.transforms import Compose

    from jnet.bundles.parse import bundle_parser
    from jnet.tools.bundle_commands import repo_bundle

    parser = bundle_parser(repo_bundle(bundle), base="configs/inference.json")
    lean = parser.get_parsed_content("preprocessing")
    to_labels = parser.get_parsed_content("postprocessing").transforms[0]
    parser["preprocessing"]["transforms"][2]["in_place"] = False  # Reorientd
    parser["preprocessing"]["transforms"][3]["in_place"] = False  # ZNormalized
    parser.parse()
    copying = parser.get_parsed_content("preprocessing", lazy=False)
    assert isinstance(copying, Compose) and copying is not lean
    return parser, lean, to_labels, copying


@pytest.mark.parametrize(
    "bundle,shape,axes",
    [
        ("prostate_mri_lowres_32", (72, 60, 2 * SLAB_SLICES + 3), "LPS"),  # flips, non-square slices
        ("prostate_mri_lowres_16", (64, 40, 20), "PIL"),  # permuted axes: the slice axis stored first
        ("brats_mri_lowres_16", (240, 240, SLAB_SLICES + 4), "LPI"),  # pad_or_crop grid, nested regions
    ],
)
def test_the_slab_wise_inverse_to_labels_writes_the_masks_of_activation_invertd_and_labels(tmp_path, bundle, shape, axes):
    """InvertToLabelsd (with the in-place Reorientd and ZNormalized) gives the masks, affine and metadata of today's
    Activationd -> Invertd -> AsLabelsd after copying pre-processing, voxel for voxel."""
    import nibabel as nib
    import torch
    from monai.data import decollate_batch, list_data_collate
    from monai.transforms import Compose, Invertd

    parser, lean, to_labels, copying = _pipelines(bundle)
    channels = int(parser["in_channels"])
    rng = np.random.default_rng(3)
    data = (rng.normal(size=shape + (channels,)) * 50 + 300).astype(np.float32)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    for axis, (code, spacing) in enumerate(zip(axes, (0.8, 0.7, 3.0))):  # voxel axis -> world axis and direction
        world = "RAS".index(code) if code in "RAS" else "LPI".index(code)
        affine[world, axis] = spacing if code in "RAS" else -spacing
    affine[:3, 3] = [-30.0, 12.0, 40.0]
    assert "".join(nib.aff2axcodes(affine)) == axes
    path = str(tmp_path / "case.nii.gz")
    nib.save(nib.Nifti1Image(data, affine), path)

    images = [pipeline({"image": path}) for pipeline in (lean, copying)]
    np.testing.assert_allclose(images[0]["image"].numpy(), images[1]["image"].numpy(), rtol=0, atol=1e-6)
    batch = list_data_collate([images[0]])
    size, classes = int(parser["output_size"]), int(parser["num_classes"])
    torch.manual_seed(0)  # logits of every class somewhere (random weights give one label everywhere)
    batch["pred"] = torch.nn.functional.avg_pool3d(torch.randn(1, classes, size, size, batch["image"].shape[-1]) * 40, (9, 9, 1), 1, (4, 4, 0))
    (item,) = decollate_batch(batch)
    old = Compose([
        parser.get_parsed_content("post_activation"),
        Invertd(keys="pred", transform=copying, orig_keys="image", nearest_interp=False, to_tensor=True),
        parser.get_parsed_content("output_labels"),
    ])
    old_item = dict(item, image=images[1]["image"])
    old_item["image"].applied_operations = images[1]["image"].applied_operations
    new_mask = to_labels(dict(item))["pred"]
    old_mask = old(old_item)["pred"]
    assert tuple(new_mask.shape) == (1,) + shape and new_mask.dtype == torch.uint8
    np.testing.assert_array_equal(new_mask.numpy(), old_mask.numpy().astype(np.uint8))
    np.testing.assert_allclose(new_mask.affine.numpy(), affine, atol=1e-6)
    np.testing.assert_allclose(old_mask.affine.numpy(), affine, atol=1e-6)
    assert len(np.unique(new_mask.numpy())) > 1  # random weights still give several labels: the test can fail
    assert new_mask.meta["filename_or_obj"] == path


@pytest.mark.parametrize("axes", ["LPS", "RAS", "PIL", "SRA", "ILP"])
def test_reorienting_in_place_equals_the_reoriented_copy_with_positive_strides(axes):
    import nibabel as nib

    from jnet.processing import apply_orientation, oriented_in_place

    volume = np.random.default_rng(4).normal(size=(2, 7, 6, 5)).astype(np.float32)
    forward = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(tuple(axes)), nib.orientations.axcodes2ornt(tuple("RAS")))
    expected = apply_orientation(volume, forward)
    view = oriented_in_place(volume, forward)
    np.testing.assert_array_equal(view, expected)
    assert np.shares_memory(view, volume) and all(stride > 0 for stride in view.strides)
