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
