"""The resolution-switchable J-Net (issue 16): one backbone and head for every input size."""

import pytest
import torch

from jnet.networks import ELUNet, JNet, SizeSwitchedBatchNorm2d, SwitchableJNet, UpscalingHead

SIZES = (16, 32, 64, 128)


def _network(per_size_norm: bool = False, seed: int = 0) -> SwitchableJNet:
    torch.manual_seed(seed)
    network = SwitchableJNet(ELUNet(2, 3, features=4, num_pools=4), 3, output_size=256, sizes=SIZES, per_size_norm=per_size_norm, head_init="default")
    with torch.no_grad():  # BatchNorm statistics that differ from the defaults, per norm: the test can tell norms apart
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return network


@pytest.mark.parametrize("per_size_norm", [False, True])
def test_every_size_gives_256_logits_in_eval_and_its_levels_in_training(per_size_norm):
    network = _network(per_size_norm)
    for size in SIZES:
        x = torch.randn(2, 2, size, size)
        network.eval()
        with torch.no_grad():
            assert tuple(network(x).shape) == (2, 3, 256, 256)
        network.train()
        levels = network(x)
        assert [tuple(t.shape[2:]) for t in levels] == [(s, s) for s in (256, 128, 64, 32, 16) if s >= size]


def test_an_unsupported_size_is_a_clear_error_naming_the_supported_ones():
    network = _network().eval()
    with pytest.raises(ValueError, match=r"input of 48x48: this network serves 16x16, 32x32, 64x64, 128x128 inputs"):
        network(torch.randn(1, 2, 48, 48))
    with pytest.raises(ValueError, match=r"output_size \(256\) / 2\*\*k"):
        SwitchableJNet(ELUNet(2, 3, features=4), 3, sizes=(16, 48))


@pytest.mark.parametrize("per_size_norm", [False, True])
def test_each_size_computes_the_plain_jnet_of_that_size(per_size_norm):
    """The same weights give the per-size network's computation: eval logits and every training level."""
    network = _network(per_size_norm)
    for size in SIZES:
        fixed = network.at_size(size)
        assert isinstance(fixed, JNet) and fixed.head.levels == {16: 4, 32: 3, 64: 2, 128: 1}[size]
        x = torch.randn(2, 2, size, size)
        network.eval(), fixed.eval()
        with torch.no_grad():
            torch.testing.assert_close(network(x), fixed(x), rtol=1e-5, atol=1e-5)
        network.train(), fixed.train()
        for switched, plain in zip(network(x), fixed(x)):
            torch.testing.assert_close(switched, plain, rtol=1e-5, atol=1e-5)


def test_the_head_of_a_larger_size_is_the_top_levels_of_the_16x16_head():
    network = _network()
    head = UpscalingHead(3, 2, init="default")
    head.level_modules = network.head.level_modules[2:]
    logits = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network.head(logits, levels=2), head(logits))
        torch.testing.assert_close(network.head(logits, levels=2), network.head.reference_forward(logits, levels=2))


def test_each_size_uses_its_own_norms():
    """Perturbing the 32x32 norms' statistics changes the 32x32 output only."""
    network = _network(per_size_norm=True).eval()
    inputs = {size: torch.randn(1, 2, size, size) for size in (16, 32)}
    with torch.no_grad():
        before = {size: network(x) for size, x in inputs.items()}
        for module in network.modules():
            if isinstance(module, SizeSwitchedBatchNorm2d):
                module.norms[SIZES.index(32)].running_mean.add_(1.0)
        after = {size: network(x) for size, x in inputs.items()}
    assert torch.equal(before[16], after[16])
    assert (before[32] - after[32]).abs().max() > 1e-3


def test_parameters_beyond_the_backbone_and_the_head_are_the_per_size_norms_only():
    shared, switched = _network(False), _network(True)
    head = sum(p.numel() for p in shared.head.parameters())
    assert head == 15 * 3 * 4 == 180  # the 4-level head, whatever the size
    backbone = sum(p.numel() for p in shared.backbone.parameters())
    extra = sum(p.numel() for p in switched.parameters()) - backbone - head
    assert shared.norm_parameters_per_size == 0
    assert extra == (len(SIZES) - 1) * switched.norm_parameters_per_size > 0


def test_weights_for_other_sizes_are_refused():
    network = _network()
    other = SwitchableJNet(ELUNet(2, 3, features=4), 3, sizes=(32, 64))
    with pytest.raises(RuntimeError, match="trained for the input sizes 32, 64, this network serves 16, 32, 64, 128"):
        network.load_state_dict(other.state_dict(), strict=False)
