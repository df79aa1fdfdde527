import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from jnet.losses import MultiStageLoss, level_targets


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
