"""The slice-batched inferer of the bundles' inference and validation."""

import torch

from jnet.bundles.parse import bundle_network, bundle_parser
from conftest import BUNDLE_16
from jnet.inferers import SliceBatchInferer


def test_slices_go_through_in_batches_and_come_back_in_place():
    seen = []

    def network(x):
        seen.append(x.shape[0])
        return x[:, :1].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) * 2  # (N, 1, 2H, 2W)

    volume = torch.randn(2, 3, 4, 5, 7)
    out = SliceBatchInferer(batch_size=4)(volume, network)
    assert seen == [4, 4, 4, 2] and out.shape == (2, 1, 8, 10, 7)
    assert torch.equal(out[1, 0, ::2, ::2, 6], 2 * volume[1, 0, :, :, 6])


def test_channels_last_gives_the_outputs_of_the_default_layout():
    """The inference configs hand the network NHWC slices (faster on CPU): the same logits to float tolerance, and
    the network is left as it was."""
    torch.manual_seed(0)
    network = bundle_network(BUNDLE_16).eval()
    volume = torch.randn(1, 2, 16, 16, 9)
    with torch.inference_mode():
        plain = SliceBatchInferer(batch_size=4)(volume, network)
        fast = SliceBatchInferer(batch_size=4, channels_last=True)(volume, network)
    assert fast.shape == plain.shape == (1, 3, 256, 256, 9) and fast.is_contiguous()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert all(p.is_contiguous() for p in network.parameters())
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    assert parser.get_parsed_content("inferer").memory_format == torch.channels_last


def test_chunks_spanning_two_volumes_fill_the_one_output_as_a_concatenation_would():
    """The inferer writes each chunk into one preallocated output (no list of chunks + cat + copy): same values and
    the same batch metadata as concatenating the chunks, with chunks that cross from one volume into the next."""
    from monai.data import MetaTensor, decollate_batch, list_data_collate

    torch.manual_seed(0)
    volumes = [MetaTensor(torch.randn(2, 8, 8, 5), meta={"filename_or_obj": name}) for name in ("a.nii.gz", "b.nii.gz")]
    batch = list_data_collate([{"image": v} for v in volumes])["image"]
    network = torch.nn.ConvTranspose2d(2, 3, 2, 2)
    with torch.inference_mode():
        out = SliceBatchInferer(batch_size=3)(batch, network)
        slices = batch.as_tensor().permute(0, 4, 1, 2, 3).reshape(10, 2, 8, 8)
        expected = torch.cat([network(c) for c in torch.split(slices, 3)]).reshape(2, 5, 3, 16, 16).permute(0, 2, 3, 4, 1)
    assert isinstance(out, MetaTensor) and out.is_batch and out.is_contiguous()
    assert torch.equal(out.as_tensor(), expected)
    assert [item["pred"].meta["filename_or_obj"] for item in decollate_batch({"pred": out})] == ["a.nii.gz", "b.nii.gz"]


def test_slices_per_call_keeps_a_cpu_call_small_and_the_bundles_use_it():
    """On a CPU the inferer's batch shrinks with the input size (per-slice throughput falls with larger calls
    there); on a GPU it stays 32. A bundle's inferer reads it for its operating size."""
    from jnet.bundles.parse import bundle_parser
    from jnet.inferers import slices_per_call
    from jnet.tools.bundle_commands import repo_bundle

    assert [slices_per_call(r) for r in (16, 32, 64, 128, 256)] == [32, 32, 8, 4, 4]
    assert slices_per_call(128, "cuda:0") == 32
    for bundle, expected in (("prostate_mri_lowres_128", 4), ("brats_mri_lowres_16", 32)):
        for config in ("configs/inference.json", "configs/train.json"):
            parser = bundle_parser(repo_bundle(bundle), base=config)
            parser["device"] = "$torch.device('cpu')"
            inferer = parser.get_parsed_content("inferer" if "inference" in config else "validate#inferer")
            assert inferer.batch_size == expected, (bundle, config)
    any_size = bundle_parser(repo_bundle("prostate_mri_lowres_any"), base="configs/inference.json")
    any_size["device"], any_size["input_size"] = "$torch.device('cpu')", 64  # --input_size 64: its operating size
    assert any_size.get_parsed_content("inferer").batch_size == 8
