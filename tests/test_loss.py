import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from jnet.engines import PrepareBatchHighRes
from jnet.losses import DistillationLoss, MultiStageLoss, SuperResolutionLoss, TrainingTargets, level_targets
from jnet.networks import ELUNet, JNet


class SquaredError(torch.nn.Module):
    def forward(self, x, y):
        return ((x - y) ** 2).mean()


def test_loss_equals_hand_computed_sum():
    # 2 classes, levels at 4x4 and 2x2; target indices at 4x4
    target = torch.tensor([[[[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]]])
    high = torch.zeros(1, 2, 4, 4)
    low = torch.ones(1, 2, 2, 2)
    loss = MultiStageLoss(SquaredError(), num_classes=2, weights=[1.0, 0.5])
    # one-hot at 4x4: channel 1 holds half the pixels -> high-level error: mean of one-hot squared = 0.5
    # 2x2 target (nearest): [[0, 1], [1, 0]] -> one-hot vs all-ones: half the entries are wrong -> 0.5
    assert loss([high, low], target).item() == pytest.approx(1.0 * 0.5 + 0.5 * 0.5)


def test_default_is_equal_weighted_dicece_per_level():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 32, 32))
    logits = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16)]
    one_hot = F.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float()
    base = DiceCELoss(softmax=True)
    expected = base(logits[0], one_hot) + base(logits[1], F.interpolate(one_hot, size=(16, 16), mode="nearest-exact"))
    assert MultiStageLoss(num_classes=3)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_intermediate_targets_are_class_shares():
    target = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    target[..., :3, :] = 1  # 3 of 8 rows
    one_hot = F.one_hot(target[:, 0], 2).permute(0, 3, 1, 2).float()
    highest, middle, lowest = level_targets(one_hot, [(8, 8), (2, 2), (1, 1)], intermediate="soft")
    assert torch.equal(highest, one_hot)
    assert middle[0, 1, 0, 0].item() == pytest.approx(0.75)  # top-left 4x4 block: 3 of 4 rows are class 1
    assert set(lowest.unique().tolist()) <= {0.0, 1.0}  # nearest at the lowest level


@pytest.mark.parametrize("intermediate", ["nearest", "soft"])
@pytest.mark.parametrize("full,sizes", [(256, (256, 128, 64, 32, 16)), (96, (96, 48, 32, 40))])  # 40: no integer factor
def test_level_targets_from_the_index_map_equal_the_one_hot_map_resized(intermediate, full, sizes):
    """The loss one-hot encodes each level from the picked index map (a strided view where the size divides):
    exactly the values of one-hot encoding at full resolution and resizing every channel (the earlier path)."""
    from jnet.losses.multistage_loss import one_hot_channels

    torch.manual_seed(5)
    indices = torch.randint(0, 3, (2, 1, full, full)).float()
    one_hot = F.one_hot(indices[:, 0].long(), 3).permute(0, 3, 1, 2).float()
    assert torch.equal(one_hot_channels(indices, 3), one_hot)
    levels = [(s, s) for s in sizes]
    expected = [one_hot] + [
        F.adaptive_avg_pool2d(one_hot, size) if intermediate == "soft" and 0 < i < len(levels) - 1 else F.interpolate(one_hot, size=size, mode="nearest-exact")
        for i, size in enumerate(levels) if i > 0
    ]
    targets = MultiStageLoss(num_classes=3, intermediate_targets=intermediate)._one_hot_targets(indices, levels)
    assert len(targets) == len(expected)
    for got, want in zip(targets, expected):
        assert got.shape == want.shape and torch.equal(got, want)
    integers = MultiStageLoss(num_classes=3, intermediate_targets=intermediate)._one_hot_targets(indices.long(), levels)
    assert all(torch.equal(a, b) for a, b in zip(integers, expected))  # integer class indices: the same targets
    channels = (torch.rand(2, 3, full, full) > 0.5).float()  # multi-channel (BraTS) targets: the strided pick too
    assert all(torch.equal(a, F.interpolate(channels, size=size, mode="nearest-exact")) for a, size in zip(level_targets(channels, levels[1:]), levels[1:]))


def test_wrong_number_of_weights_is_refused():
    with pytest.raises(ValueError, match="weights"):
        MultiStageLoss(num_classes=2, weights=[1.0])([torch.randn(1, 2, 4, 4)] * 2, torch.zeros(1, 1, 4, 4))


def test_paper_recipe_bce_with_logits_per_level():
    torch.manual_seed(1)
    target = torch.randint(0, 3, (2, 1, 8, 8))
    logits = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
    one_hot = F.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float()
    bce = torch.nn.BCEWithLogitsLoss()
    expected = bce(logits[0], one_hot) + bce(logits[1], F.interpolate(one_hot, size=(4, 4), mode="nearest-exact"))
    assert MultiStageLoss(bce, num_classes=3)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_dice_bce_keeps_overlapping_channels_binary():
    from monai.losses import DiceLoss

    from jnet.losses import DiceBCELoss

    torch.manual_seed(2)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = (torch.rand(2, 3, 8, 8) > 0.7).float()
    expected = DiceLoss(sigmoid=True)(logits, target) + torch.nn.BCEWithLogitsLoss()(logits, target)
    assert DiceBCELoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    # where every region channel is empty, the loss must push every logit down (MONAI's DiceCELoss with
    # sigmoid=True uses a softmax cross-entropy across channels and gives no such push)
    empty = torch.zeros(1, 3, 8, 8)
    zero_logits = torch.zeros(1, 3, 8, 8, requires_grad=True)
    DiceBCELoss(lambda_dice=0.0)(zero_logits, empty).backward()
    assert (zero_logits.grad > 0).all()


# ---- training-only auxiliaries: distillation and the DSRL-style super-resolution branch ----


class _Logits(torch.nn.Module):
    """A stand-in teacher whose logits are its input (so the test sets them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _zero_loss(outputs, label):
    return (outputs[0] * 0).sum()


def test_distillation_adds_the_kl_to_the_teacher_and_nothing_when_they_agree():
    torch.manual_seed(0)
    student = torch.randn(2, 3, 8, 8, requires_grad=True)
    teacher_logits = torch.randn(2, 3, 8, 8)
    label = torch.randint(0, 3, (2, 1, 8, 8))
    base = MultiStageLoss(num_classes=3)
    loss = DistillationLoss(base, _Logits(), weight=0.5, temperature=2.0)
    total = loss([student], TrainingTargets(label, teacher_logits))
    t = 2.0
    kl = torch.nn.functional.kl_div(torch.log_softmax(student / t, 1), torch.log_softmax(teacher_logits / t, 1), log_target=True, reduction="none").sum(1).mean()
    assert total.item() == pytest.approx(base([student], label).item() + 0.5 * t * t * kl.item(), rel=1e-5)
    assert kl.item() > 0.01
    agreed = loss([teacher_logits.clone()], TrainingTargets(label, teacher_logits))
    assert agreed.item() == pytest.approx(base([teacher_logits], label).item(), abs=1e-6)
    total.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    sigmoid = DistillationLoss(_zero_loss, _Logits(), sigmoid=True)
    assert sigmoid([teacher_logits], TrainingTargets(label, teacher_logits)).item() == pytest.approx(0.0, abs=1e-6)
    assert sigmoid([student], TrainingTargets(label, teacher_logits)).item() > 0.001


def test_distillation_keeps_its_teacher_frozen_and_in_eval_mode():
    teacher = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    loss = DistillationLoss(_zero_loss, teacher).train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(TypeError, match="PrepareBatchHighRes"):
        loss([torch.zeros(1, 3, 4, 4)], torch.zeros(1, 1, 4, 4))  # a plain label: the config lacks prepare_batch


def test_super_resolution_branch_trains_the_backbone_and_leaves_the_network_unchanged():
    torch.manual_seed(0)
    network = JNet(ELUNet(2, 3, features=4, num_pools=2), num_classes=3, levels=2, input_size=16)
    keys = list(network.state_dict())
    loss = SuperResolutionLoss(_zero_loss, network, in_features=4, out_channels=2, levels=2, weight=1.0)
    assert list(network.state_dict()) == keys  # the branch lives in the loss: the saved network is the same
    network.train()
    outputs = network(torch.randn(2, 2, 16, 16))
    highres = torch.randn(2, 2, 64, 64)
    value = loss(outputs, TrainingTargets(torch.zeros(2, 1, 64, 64), highres))
    assert value.item() > 0.5  # MSE of an untrained branch against unit-variance noise
    value.backward()
    assert network.backbone.in_conv[0].weight.grad.abs().sum() > 0  # the reconstruction reaches the shared backbone
    assert all(p.grad is not None for p in loss.branch.parameters())
    network.eval()
    with torch.no_grad():
        network(torch.randn(1, 2, 16, 16))
    with pytest.raises(RuntimeError, match="training mode"):  # an eval forward leaves nothing to reconstruct from
        loss(outputs, TrainingTargets(torch.zeros(2, 1, 64, 64), highres))


def test_prepare_batch_hands_the_loss_the_highres_image():
    batch = {"image": torch.zeros(2, 2, 16, 16), "label": torch.ones(2, 1, 64, 64), "image_highres": torch.full((2, 2, 64, 64), 3.0)}
    image, targets = PrepareBatchHighRes("image_highres")(batch, "cpu")
    assert image.shape == (2, 2, 16, 16) and isinstance(targets, TrainingTargets)
    assert torch.equal(targets.label, batch["label"]) and torch.equal(targets.highres, batch["image_highres"])
    with pytest.raises(KeyError, match="highres_key"):
        PrepareBatchHighRes("image_highres")({"image": batch["image"], "label": batch["label"]}, "cpu")


# ---- the fused per-level loss: MONAI's values and gradients, from a closed-form backward ----


def _values_and_gradients(loss, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().clone().requires_grad_()
    value = loss(x, target)
    (value * 3.0).backward()  # an upstream gradient other than 1 reaches the backward
    return value.detach(), x.grad


def _targets(kind: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    if kind == "one_hot":
        return F.one_hot(torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator), shape[1]).movedim(-1, 1).float()
    # soft: area-averaged one-hot, as the soft intermediate targets
    return F.adaptive_avg_pool2d(_targets("one_hot", (shape[0], shape[1], shape[2] * 2, shape[3] * 2), generator), shape[2:])


@pytest.mark.parametrize("kind", ["one_hot", "soft"])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (0.3, 2.0)])
def test_softmax_dice_ce_equals_monai_dice_ce_values_and_gradients(kind, lambdas):
    from monai.losses import DiceCELoss

    from jnet.losses import SoftmaxDiceCELoss

    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 3, 32, 24, generator=generator) * 3
    target = _targets(kind, tuple(logits.shape), generator)
    target[0, 0] += target[0, 2]  # class 2 absent from one sample: the smoothing terms decide its Dice
    target[0, 2] = 0.0
    expected = _values_and_gradients(DiceCELoss(softmax=True, lambda_dice=lambdas[0], lambda_ce=lambdas[1]), logits, target)
    fused = _values_and_gradients(SoftmaxDiceCELoss(*lambdas), logits, target)
    assert fused[0].item() == pytest.approx(expected[0].item(), rel=1e-6)
    assert expected[1].abs().max() > 0
    assert torch.allclose(fused[1], expected[1], rtol=1e-4, atol=1e-6 * expected[1].abs().max().item()), (fused[1] - expected[1]).abs().max()


@pytest.mark.parametrize("kind", ["one_hot", "soft"])
def test_softmax_dice_ce_backward_is_the_derivative_of_the_forward(kind):
    """``torch.autograd.gradcheck`` (float64, finite differences): the closed-form backward is the forward's derivative,
    also where the backward runs twice on one graph."""
    from jnet.losses.dice_ce import softmax_dice_ce

    generator = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 3, 6, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    target = _targets(kind, (2, 3, 6, 5), generator).double()
    assert torch.autograd.gradcheck(lambda x: softmax_dice_ce(x, target, 0.7, 1.3), (logits,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softmax_dice_ce_under_autocast_sums_in_float32(dtype):
    """``--amp True``: the network hands the loss float16 (CUDA's default) or bfloat16 logits. At 256x256 a per-channel
    sum passes float16's largest value (65,504): a confident all-background slice gave inf / NaN when the sums ran in
    float16. The loss equals MONAI's float32 loss on the same logits, its gradient too, and comes back float32."""
    from monai.losses import DiceCELoss

    from jnet.losses import SoftmaxDiceCELoss

    logits = torch.zeros(2, 3, 256, 256)
    logits[:, 0] = 5.0  # every pixel confidently background
    target = torch.zeros_like(logits)
    target[:, 0] = 1.0
    target[1, :, 100:140, 100:140] = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)  # one sample with a foreground patch
    low = logits.to(dtype)
    expected = _values_and_gradients(DiceCELoss(softmax=True), low.float(), target)
    x = low.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        value = SoftmaxDiceCELoss()(x, target)
    (value * 3.0).backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(x.grad).all()
    assert value.item() == pytest.approx(expected[0].item(), rel=1e-5)  # a whole-map BLAS dot was 3e-4 off
    assert x.grad.dtype == dtype and torch.allclose(x.grad.float(), expected[1].to(dtype).float(), rtol=1e-2, atol=1e-9)


def test_softmax_dice_ce_gives_no_silent_second_derivative():
    """The closed-form backward keeps no graph: asking for a second derivative raises instead of returning a wrong one."""
    from jnet.losses.dice_ce import softmax_dice_ce

    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = F.one_hot(torch.randint(0, 3, (1, 4, 4)), 3).movedim(-1, 1).float()
    upstream = torch.ones((), requires_grad=True)  # a gradient that itself has a graph (a gradient penalty's)
    (grad,) = torch.autograd.grad(softmax_dice_ce(logits, target), logits, grad_outputs=upstream, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


def test_softmax_dice_ce_refuses_mismatched_shapes():
    from jnet.losses.dice_ce import softmax_dice_ce

    with pytest.raises(ValueError, match="same shape"):
        softmax_dice_ce(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="C>1"):
        softmax_dice_ce(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


class _MonaiDiceBCE(torch.nn.Module):
    """The BraTS per-level loss written out from MONAI's and PyTorch's losses (what :class:`DiceBCELoss` computes)."""

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice, self.bce = DiceLoss(sigmoid=True), torch.nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.bce(logits, target)


@pytest.mark.parametrize("bundle", ["prostate_mri_lowres_16", "brats_mri_lowres_32"])
def test_the_bundle_training_step_equals_autograd_through_the_plain_layers_and_monai_losses(bundle):
    """One training step of the bundle's own ``network`` and ``loss`` (train.json): its loss value and every
    parameter's gradient equal those of the definition - the head's plain layers level by level and MONAI's losses,
    differentiated by autograd - to float tolerance."""
    import os

    from jnet.bundles.parse import bundle_parser

    parser = bundle_parser(os.path.join(os.path.dirname(__file__), "..", "bundles", bundle))
    parser["device"] = "$torch.device('cpu')"
    torch.manual_seed(3)
    network, loss = parser.get_parsed_content("network"), parser.get_parsed_content("loss")
    network.train()
    size, classes, channels = (int(parser[k]) for k in ("input_size", "num_classes", "in_channels"))
    images = torch.randn(4, channels, size, size)
    if loss.num_classes is None:  # BraTS' overlapping regions
        labels = (torch.rand(4, classes, 256, 256) > 0.7).float()
        reference_loss = MultiStageLoss(_MonaiDiceBCE(), None, loss.weights, loss.intermediate_targets)
    else:
        labels = torch.randint(0, classes, (4, 1, 256, 256)).float()
        reference_loss = MultiStageLoss(DiceCELoss(softmax=True), classes, loss.weights, loss.intermediate_targets)
    results = []
    for forward, criterion in ((network, loss), (lambda x: network.head.reference_forward(network.backbone(x)), reference_loss)):
        network.zero_grad()
        value = criterion(forward(images), labels)
        value.backward()
        results.append((value.detach(), [p.grad.clone() for p in network.parameters()]))
    (value, grads), (expected, expected_grads) = results
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    for grad, reference in zip(grads, expected_grads):
        assert reference.abs().max() > 0
        assert (grad - reference).abs().max() <= 1e-4 * reference.abs().max() + 1e-7, (grad - reference).abs().max()
