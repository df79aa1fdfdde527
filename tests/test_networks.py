import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet, UNet

from jnet.networks import ELUNet, JNet, UpscalingHead, elunet_for_input


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_output_shapes_for_every_input_size(size):
    levels = {16: 4, 32: 3, 64: 2, 128: 1}[size]
    net = JNet(elunet_for_input(2, 3, size, features=4), num_classes=3, levels=levels, output_size=256)
    x = torch.randn(2, 2, size, size)
    net.train()
    outputs = net(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 256 // 2**k, 256 // 2**k) for k in range(levels + 1)]
    net.eval()
    with torch.no_grad():
        assert tuple(net(x).shape) == (2, 3, 256, 256)


def test_head_adds_at_most_200_parameters_for_3_classes_and_4_levels():
    assert count(UpscalingHead(3, 4)) == 180  # 15 per class and level
    assert count(UpscalingHead(1, 4)) == 60
    # the J-Net output-end skip option costs more; the count is reported, not hidden
    assert count(UpscalingHead(3, 4, skip=True)) == 351
    assert count(UpscalingHead(1, 4, skip=True)) == 117


def test_levels_zero_head_is_identity_and_wrapper_upsamples_in_eval():
    x = torch.randn(1, 3, 16, 16)
    assert UpscalingHead(3, 0)(x)[0] is x
    net = JNet(elunet_for_input(2, 3, 16, features=4), 3, levels=0, output_size=256).eval()
    inp = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        logits = net.backbone(inp)
        assert torch.allclose(net(inp), F.interpolate(logits, size=(256, 256), mode="bilinear", align_corners=False))
    net.train()
    assert tuple(net(torch.randn(2, 2, 16, 16))[0].shape) == (2, 3, 16, 16)  # the paper's baseline: input resolution


def test_bilinear_variant_trains_at_output_resolution():
    net = JNet(elunet_for_input(2, 3, 16, features=4), 3, levels=0, output_size=256, upsample_in_training=True)
    outputs = net.train()(torch.randn(2, 2, 16, 16))
    assert len(outputs) == 1 and tuple(outputs[0].shape) == (2, 3, 256, 256)
    assert count(net) == count(net.backbone)


def plain_layers(head, x):
    """The head as torch.nn's own ConvTranspose2d and Conv2d modules compute it, level by level."""
    outputs, skip = [x], x
    for k, level in enumerate(head.level_modules):
        ups = [level.up(outputs[-1])]
        if head.skip and k >= 1:
            skip = head.skip_chain[k - 1](skip)
            ups.append(level.skip_up(skip))
        outputs.append(level.conv(torch.stack(ups, dim=2).flatten(1, 2)))
    return outputs[::-1]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("size", [(16, 12), (3, 5), (2, 4)])
def test_folded_head_equals_the_plain_layers(skip, classes, size):
    torch.manual_seed(0)
    head = UpscalingHead(classes, 4, skip=skip, init="default")
    x = torch.randn(2, classes, *size)
    reference = plain_layers(head, x)
    for fast, plain in zip(head(x), reference):
        assert fast.shape == plain.shape
        assert torch.allclose(fast, plain, atol=1e-5), (fast - plain).abs().max()
    with torch.no_grad():
        assert torch.allclose(head(x, highest_only=True)[0], reference[0], atol=1e-5)


@pytest.mark.parametrize("batch", [1, 6])  # 6: the large regions are written one phase row at a time
@pytest.mark.parametrize("levels", [1, 4])
def test_inference_path_writes_the_plain_layers_output(batch, levels):
    from jnet.networks import upscaling_head

    torch.manual_seed(2)
    head = UpscalingHead(3, levels, init="default").eval()
    x = torch.randn(batch, 3, 16, 16)
    with torch.no_grad():
        fast = head(x, highest_only=True)[0]
        assert torch.allclose(fast, plain_layers(head, x)[0], atol=1e-5)
        out_of_place = upscaling_head._apply_folded(upscaling_head._patches(x), head.folded()[-1], 1 << levels)
        assert torch.allclose(fast, out_of_place, atol=1e-6)  # the same matmuls, split differently
    interior = batch * 3 * 14 * 14 * 4**levels
    assert (interior > upscaling_head.WRITE_CHUNK) == (batch == 6 and levels == 4)  # both write paths are covered


def test_folded_head_gradients_equal_the_plain_layers():
    torch.manual_seed(1)
    head = UpscalingHead(3, 3, skip=True, init="default")
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = [torch.randn_like(o) for o in plain_layers(head, x)]
    grads = []
    for run in (lambda: head(x), lambda: plain_layers(head, x)):
        head.zero_grad()
        x.grad = None
        sum(((o - t) ** 2).mean() for o, t in zip(run(), target)).backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in head.parameters()])
    for fast, plain in zip(*grads):
        assert torch.allclose(fast, plain, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("batch,size", [(1, (3, 5)), (4, (16, 12))])
def test_the_training_levels_equal_the_exported_form_values_and_gradients(batch, size):
    """Training runs :class:`FoldedLevel` (written in place, hand-written backward), the exported graph
    :func:`_apply_folded` (autograd through matmuls, concatenations and a pixel shuffle): the same function."""
    from jnet.networks import upscaling_head

    torch.manual_seed(4)
    head = UpscalingHead(3, 3, init="default")
    x = torch.randn(batch, 3, *size, requires_grad=True)
    results = []
    for apply in (upscaling_head._apply_folded, upscaling_head.FoldedLevel.apply):
        head.zero_grad()
        x.grad = None
        patches = upscaling_head._patches(x)
        outputs = [apply(patches, kernel, 2 << k) for k, kernel in enumerate(head.folded())]
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outputs).backward()
        results.append((outputs, [x.grad.clone()] + [p.grad.clone() for p in head.parameters()]))
    (exported, exported_grads), (trained, trained_grads) = results
    assert all(p.abs().sum() > 0 for p in trained_grads)  # every parameter and the input get a gradient
    for a, b in zip(exported + exported_grads, trained + trained_grads):
        assert a.shape == b.shape  # float rounding of sums over many pixels: relative to the largest entry
        assert (a - b).abs().max() <= 1e-5 * a.abs().max() + 1e-6, (a - b).abs().max()


@pytest.mark.parametrize("size", [(3, 3), (4, 6)])
def test_folded_level_backward_is_the_derivative_of_its_forward(size):
    """``torch.autograd.gradcheck`` (float64, finite differences) of :class:`FoldedLevel` in both inputs, with a large
    region written one phase row at a time (``WRITE_CHUNK`` lowered) and without."""
    from jnet.networks import upscaling_head

    torch.manual_seed(5)
    patches = torch.randn(2, 2, *size, 10, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(9, 2, 10, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, k: upscaling_head.FoldedLevel.apply(p, k, 4), (patches, kernel))
    chunk = upscaling_head.WRITE_CHUNK
    upscaling_head.WRITE_CHUNK = 8
    try:
        assert torch.autograd.gradcheck(lambda p, k: upscaling_head.FoldedLevel.apply(p, k, 4), (patches, kernel))
    finally:
        upscaling_head.WRITE_CHUNK = chunk


def test_cached_kernels_follow_parameter_changes():
    head = UpscalingHead(3, 2).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        before = head(x, highest_only=True)[0]
        other = UpscalingHead(3, 2, init="default")
        head.load_state_dict(other.state_dict())  # in-place copy: the cache must notice
        after = head(x, highest_only=True)[0]
        assert not torch.allclose(before, after)
        assert torch.allclose(after, plain_layers(other, x)[0], atol=1e-5)
        head.level_modules[0].conv.bias.add_(1.0)  # an optimizer-style in-place update
        assert torch.allclose(head(x, highest_only=True)[0], plain_layers(head, x)[0], atol=1e-5)


def test_bilinear_init_is_bilinear_upsampling_away_from_the_border():
    x = torch.randn(1, 3, 8, 8)
    out = UpscalingHead(3, 1)(x)[0]
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-6)
    assert not torch.allclose(out, expected)  # zero "same" padding at the border, as the layer it replaces


def test_gradients_reach_head_and_backbone():
    from jnet.losses import MultiStageLoss

    net = JNet(elunet_for_input(2, 3, 16, features=4), 3, levels=4, output_size=256, head_init="default").train()
    loss = MultiStageLoss(num_classes=3)(net(torch.randn(2, 2, 16, 16)), torch.randint(0, 3, (2, 1, 256, 256)))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in net.head.parameters())
    assert net.backbone.in_conv[0].weight.grad.abs().sum() > 0


def test_elunet_depth_follows_input_size():
    assert elunet_for_input(1, 1, 16).num_pools == 4
    assert elunet_for_input(1, 1, 8).num_pools == 3
    assert ELUNet(1, 1, features=16).num_pools == 4
    with pytest.raises(ValueError, match="divisible by 16"):
        ELUNet(1, 1, features=4, num_pools=4)(torch.randn(1, 1, 12, 12))


@pytest.mark.parametrize(
    "backbone",
    [
        lambda: UNet(2, 2, 3, channels=(8, 16, 32, 64), strides=(2, 2, 2), norm="batch"),
        lambda: BasicUNet(2, 2, 3, features=(8, 8, 16, 32, 64, 8)),
    ],
)
def test_monai_unets_plug_in_as_backbones(backbone):
    net = JNet(backbone(), 3, levels=3, output_size=256)
    outputs = net.train()(torch.randn(2, 2, 32, 32))
    assert tuple(outputs[0].shape) == (2, 3, 256, 256)
    with torch.no_grad():
        assert tuple(net.eval()(torch.randn(1, 2, 32, 32)).shape) == (1, 3, 256, 256)


@pytest.mark.parametrize("skip", [False, True])
def test_torchscript_and_eval_output_agree(skip):
    net = JNet(elunet_for_input(2, 3, 16, features=4), 3, levels=4, output_size=256, head_skip=skip).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_training_step_under_autocast_reaches_every_parameter(dtype):
    """``--amp True`` trains under autocast, where the backbone's logits come out in half precision and the head's
    kernels may not: CPU autocast stands in for CUDA's here (float16, CUDA's default, and bfloat16) - the head's
    hand-written levels and the fused loss take the mixed dtypes, the loss is the float32 loss of those logits (its
    256x256 sums overflow float16), and every parameter gets a finite gradient."""
    from jnet.losses import MultiStageLoss

    torch.manual_seed(0)
    network = JNet(elunet_for_input(1, 3, 16, features=4), 3, 4, output_size=256)
    images, labels = torch.randn(2, 1, 16, 16), torch.randint(0, 3, (2, 1, 256, 256)).float()
    with torch.autocast("cpu", dtype=dtype):
        outputs = network(images)
        loss = MultiStageLoss(num_classes=3)(outputs, labels)
    assert outputs[0].dtype == dtype and [o.shape[-1] for o in outputs] == [256, 128, 64, 32, 16]
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(MultiStageLoss(num_classes=3)([o.float() for o in outputs], labels).item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in network.parameters())
