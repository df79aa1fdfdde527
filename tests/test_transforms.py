import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from conftest import BUNDLE_16
from jnet.bundles.parse import bundle_parser
from jnet.errors import InputError
from jnet.transforms import Activationd, AsLabelsd, CheckLabelValuesd, LowResInputd, OutputGridd, RandSliceSamplerd, Reorientd, SquarePadd


def test_square_pad_centres_and_inverts():
    image = MetaTensor(torch.rand(2, 6, 4, 3))
    pad = SquarePadd(keys="image")
    padded = pad({"image": image})
    assert tuple(padded["image"].shape) == (2, 6, 6, 3)
    assert torch.equal(padded["image"][:, :, 1:5], image)
    restored = pad.inverse(padded)
    assert torch.equal(restored["image"], image)


def test_reorientation_to_ras_and_back():
    """A volume stored with its in-plane axes swapped and the first flipped (affine columns permuted): reoriented to
    RAS the voxel array is transposed and flipped, the affine becomes diagonal-positive, and the inverse restores
    both exactly."""
    data = torch.arange(2 * 4 * 5 * 3, dtype=torch.float32).reshape(2, 4, 5, 3)
    affine = torch.tensor([[0.0, 2.0, 0.0, -5.0], [-1.5, 0.0, 0.0, 7.0], [0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    transform = Reorientd(keys="image", axcodes="RAS")
    out = transform({"image": MetaTensor(data, affine=affine)})["image"]
    assert tuple(out.shape) == (2, 5, 4, 3)
    assert torch.equal(out, data.transpose(1, 2).flip(2))
    direction = out.affine[:3, :3]
    assert torch.equal(direction, torch.diag(torch.diagonal(direction))) and bool((torch.diagonal(direction) > 0).all())
    corner = affine @ torch.tensor([3.0, 0.0, 0.0, 1.0], dtype=torch.float64)  # voxel (0, 0, 0) after the flip
    assert torch.allclose(out.affine[:, 3], corner)
    back = transform.inverse({"image": out})["image"]
    assert torch.equal(back, data) and torch.equal(back.affine, affine) and not back.applied_operations


def test_output_grid_pads_or_crops_around_the_centre_and_inverts():
    image = MetaTensor(torch.rand(1, 240, 240, 2), affine=torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0])))
    grid = OutputGridd(keys="image", size=256, grid="pad_or_crop")
    out = grid({"image": image})["image"]
    assert tuple(out.shape) == (1, 256, 256, 2) and torch.equal(out[:, 8:248, 8:248], image)
    assert torch.allclose(out.affine[:2, 3], torch.tensor([-8.0, -8.0], dtype=torch.float64))
    back = grid.inverse({"image": out})["image"]
    assert torch.equal(back, image) and torch.equal(back.affine, image.affine.double())
    with pytest.raises(ValueError, match="grid must be one of"):
        OutputGridd(keys="image", size=256, grid="spacing")
    with pytest.raises(ValueError, match=r"needs square slices \(SquarePadd first\), got \(240, 200\)"):
        grid({"image": MetaTensor(torch.rand(1, 240, 200, 2))})


def test_resized_grid_keeps_label_codes_and_the_field_of_view():
    label = MetaTensor(torch.randint(0, 3, (1, 300, 300, 2)).float(), affine=torch.diag(torch.tensor([0.5, 0.5, 3.0, 1.0])))
    out = OutputGridd(keys="label", size=256, mode="nearest")({"label": label})["label"]
    assert tuple(out.shape) == (1, 256, 256, 2) and set(out.unique().tolist()) <= {0.0, 1.0, 2.0}
    assert torch.allclose(torch.diagonal(out.affine)[:2], torch.tensor([0.5 * 300 / 256] * 2, dtype=torch.float64))
    first, last = out.affine @ torch.tensor([0.0, 0, 0, 1], dtype=torch.float64), out.affine @ torch.tensor([255.0, 255, 0, 1], dtype=torch.float64)
    assert torch.allclose(first[:2] + last[:2], torch.tensor([149.5 * 0.5 * 2] * 2, dtype=torch.float64))  # same centre


def test_activation_and_labels():
    logits = torch.tensor([[[2.0]], [[0.0]], [[-1.0]]])  # (3, 1, 1)
    probabilities = Activationd(keys="pred", activation="softmax")({"pred": logits})["pred"]
    assert torch.allclose(probabilities, torch.softmax(logits, 0)) and probabilities.device == logits.device
    half = Activationd(keys="pred")({"pred": logits.to(torch.bfloat16)})["pred"]  # AMP outputs: computed in float32
    assert half.dtype == torch.float32 and torch.allclose(half, probabilities, atol=1e-2)
    assert AsLabelsd(keys="pred")({"pred": probabilities})["pred"].tolist() == [[[0]]]
    sigmoid = Activationd(keys="pred", activation="sigmoid")({"pred": torch.tensor([-800.0, 0.0, 800.0])})["pred"]
    assert sigmoid.tolist() == [0.0, 0.5, 1.0]  # no overflow
    with pytest.raises(ValueError, match="activation must be one of"):
        Activationd(keys="pred", activation="relu")


def test_lowres_input_keeps_slices_and_its_inverse_restores_the_grid_affine():
    affine = torch.diag(torch.tensor([0.5, 0.5, 3.0, 1.0]))
    image = MetaTensor(torch.rand(2, 256, 256, 5), affine=affine)
    transform = LowResInputd(keys="image", size=16, mode="area")
    low = transform({"image": image})["image"]
    assert tuple(low.shape) == (2, 16, 16, 5)
    assert torch.allclose(low[0, 0, 0, 0], image[0, :16, :16, 0].mean())  # area = mean of the covered block
    pred = MetaTensor(torch.rand(3, 256, 256, 5), affine=low.affine)
    pred.applied_operations = low.applied_operations
    restored = transform.inverse({"image": pred})["image"]
    assert tuple(restored.shape) == (3, 256, 256, 5)
    assert torch.allclose(restored.affine.float(), affine.float())


def test_nearest_lowres_picks_pixels():
    image = MetaTensor(torch.arange(64.0).reshape(1, 8, 8))
    low = LowResInputd(keys="image", size=4, mode="nearest")({"image": image})["image"]
    assert set(low.flatten().tolist()) <= set(image.flatten().tolist())


def test_slice_sampler_prefers_foreground():
    label = torch.zeros(1, 4, 4, 10)
    label[..., 7] = 1
    sampler = RandSliceSamplerd(keys=["image", "label"], num_samples=200, foreground_ratio=0.8)
    sampler.set_random_state(0)
    samples = sampler({"image": torch.rand(2, 4, 4, 10), "label": label})
    assert len(samples) == 200 and tuple(samples[0]["image"].shape) == (2, 4, 4)
    share = sum(float(s["label"].max()) for s in samples) / 200
    assert 0.75 < share < 0.9  # 0.8 + 0.2 / 10


def test_label_values_outside_the_classes_are_named():
    label = MetaTensor(torch.tensor([[[0.0, 1.0], [2.0, 5.0]]]), meta={"filename_or_obj": "/data/case_7.nii.gz"})
    with pytest.raises(InputError, match=r"case_7\.nii\.gz: label holds value\(s\) 5 outside"):
        CheckLabelValuesd(keys="label", allowed=[0, 1, 2])({"label": label})


def test_inference_pipeline_maps_a_perfect_prediction_back_onto_the_input(tiny_dataset):
    """The bundle's own pre- and post-processing: a prediction equal to the (resampled) ground truth must come
    back as the original label volume, with the input's shape and affine."""
    image_path = os.path.join(tiny_dataset, "imagesTr", "prostate_01.nii.gz")
    label_path = os.path.join(tiny_dataset, "labelsTr", "prostate_01.nii.gz")
    train = bundle_parser(BUNDLE_16)
    infer = bundle_parser(BUNDLE_16, base="configs/inference.json")
    grid_label = Compose(train.get_parsed_content("volume_transforms"))({"image": image_path, "label": label_path})["label"]
    data = infer.get_parsed_content("preprocessing")({"image": image_path})
    assert tuple(data["image"].shape[1:3]) == (16, 16)
    one_hot = torch.nn.functional.one_hot(grid_label[0].long(), 3).permute(3, 0, 1, 2).float()
    data["pred"] = 10.0 * one_hot  # logits of a perfect 256x256 prediction
    post = infer.get_parsed_content("postprocessing").transforms[:-1]  # all but SaveImaged
    restored = Compose(post)(data)["pred"]
    original = nib.load(label_path)
    assert tuple(restored.shape[1:]) == original.shape
    np.testing.assert_allclose(restored.affine.numpy(), original.affine, atol=1e-5)
    restored, truth = restored[0].numpy(), np.asarray(original.dataobj)
    for code in (1, 2):  # per foreground class (PZ 1.4 %, TZ 3.5 % of the voxels): a voxel share would hide a lost class
        assert (truth == code).sum() > 0
        dice = 2 * ((restored == code) & (truth == code)).sum() / ((restored == code).sum() + (truth == code).sum())
        assert dice >= 0.99, (code, dice)


def test_invertd_nearest_interp_brings_label_codes_back_unmixed(tiny_dataset):
    """A label map inverted through the bundle's pre-processing: ``Invertd(nearest_interp=True)`` makes the
    resizing steps pick voxels (only the codes 0-2 come back); without it they interpolate (fractional values)."""
    infer = bundle_parser(BUNDLE_16, base="configs/inference.json")
    preprocessing = infer.get_parsed_content("preprocessing")
    data = preprocessing({"image": os.path.join(tiny_dataset, "imagesTr", "prostate_01.nii.gz")})
    codes = torch.randint(0, 3, (1, 256, 256, data["image"].shape[-1])).float()
    restored = {}
    for nearest in (False, True):
        pred = MetaTensor(codes.clone(), affine=data["image"].affine)
        invert = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=nearest)
        restored[nearest] = invert({**data, "pred": pred})["pred"]
    shape = nib.load(os.path.join(tiny_dataset, "imagesTr", "prostate_01.nii.gz")).shape[:3]
    for out in restored.values():
        assert tuple(out.shape[1:]) == shape
    assert set(restored[True].unique().tolist()) <= {0.0, 1.0, 2.0}
    assert not torch.equal(restored[False], restored[False].round())  # linear mixes codes: the switch matters
    assert torch.equal(restored[True].affine, restored[False].affine)
