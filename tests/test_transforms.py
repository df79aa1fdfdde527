import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from conftest import BUNDLE_16
from jnet.bundle_io import bundle_parser
from jnet.errors import InputError
from jnet.transforms import CheckLabelValuesd, LowResInputd, RandSliceSamplerd, SquarePadd


def test_square_pad_centres_and_inverts():
    image = MetaTensor(torch.rand(2, 6, 4, 3))
    pad = SquarePadd(keys="image")
    padded = pad({"image": image})
    assert tuple(padded["image"].shape) == (2, 6, 6, 3)
    assert torch.equal(padded["image"][:, :, 1:5], image)
    restored = pad.inverse(padded)
    assert torch.equal(restored["image"], image)


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
    agreement = (restored[0].numpy() == np.asarray(original.dataobj)).mean()
    assert agreement > 0.99, agreement
