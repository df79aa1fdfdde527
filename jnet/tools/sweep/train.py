"""Train and score one sweep run (a variant at one input resolution, one seed) in-process on cached slices."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import compute_dice, compute_iou

from jnet.bundles.matrix import head_levels
from jnet.losses import DiceBCELoss, MultiStageLoss
from jnet.networks import JNet, elunet_for_input

from .data import SweepData

LEARNING_RATE = 1e-3  # Adam, every run

__all__ = ["LEARNING_RATE", "Variant", "VARIANTS", "REFERENCE", "build_network", "train_run", "score_volumes", "predict_slices"]


@dataclass(frozen=True)
class Variant:
    """How one sweep variant builds its network and loss."""

    name: str
    head: bool  # the learned upscaling head (else: bilinear upsampling of the logits in eval)
    supervise_at_output: bool = False  # levels=0 but trained against the 256 ground truth (the "bilinear" ablation)
    loss: str = "dicece"  # or "bce" (the paper's BCE-with-logits per level)
    lowres_mode: str = "area"
    head_init: str = "bilinear"
    head_skip: bool = False
    full_resolution: bool = False  # the reference: the backbone on the 256x256 input


VARIANTS = {
    "baseline": Variant("baseline", head=False),
    "bilinear": Variant("bilinear", head=False, supervise_at_output=True),
    "head": Variant("head", head=True),
    "head_paper": Variant("head_paper", head=True, loss="bce", lowres_mode="nearest", head_init="default", head_skip=True),
}
REFERENCE = Variant("reference", head=False, full_resolution=True)


def build_network(variant: Variant, in_channels: int, num_classes: int, input_size: int, features: int, output_size: int = 256) -> JNet:
    size = output_size if variant.full_resolution else input_size
    levels = head_levels(size, output_size) if variant.head else 0
    return JNet(
        elunet_for_input(in_channels, num_classes, size, features),
        num_classes,
        levels,
        output_size,
        head_skip=variant.head_skip,
        head_init=variant.head_init,
        upsample_in_training=variant.supervise_at_output,
    )


def _loss(variant: Variant, data: SweepData) -> MultiStageLoss:
    if variant.loss == "bce":
        base = torch.nn.BCEWithLogitsLoss()
    else:
        base = DiceBCELoss() if data.multilabel else DiceCELoss(softmax=True)
    return MultiStageLoss(base, num_classes=None if data.multilabel else data.num_classes)


def _lowres(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode=mode)


def _augment(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    flips = torch.rand(3, generator=generator)
    if flips[0] < 0.5:
        images, labels = images.flip(-1), labels.flip(-1)
    if flips[1] < 0.5:
        images, labels = images.flip(-2), labels.flip(-2)
    if flips[2] < 0.5:
        images, labels = images.rot90(1, (-2, -1)), labels.rot90(1, (-2, -1))
    return images, labels


def train_run(
    variant: Variant,
    data: SweepData,
    input_size: int,
    seed: int,
    iterations: int,
    batch_size: int = 16,
    features: int = 8,
    learning_rate: float = LEARNING_RATE,
) -> tuple[JNet, float]:
    """Train one network with Adam on random batches of cached slices; returns it (eval mode) and the seconds."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = build_network(variant, data.train_images.shape[1], data.num_classes, input_size, features)
    loss_function = _loss(variant, data)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    size = 256 if variant.full_resolution else input_size
    start = time.perf_counter()
    network.train()
    for _ in range(iterations):
        index = torch.randint(len(data.train_images), (batch_size,), generator=generator)
        images, labels = _augment(data.train_images[index].float(), data.train_labels[index].float(), generator)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(network(_lowres(images, size, variant.lowres_mode)), labels)
        loss.backward()
        optimizer.step()
    return network.eval(), time.perf_counter() - start


def predict_slices(network: JNet, images: torch.Tensor, input_size: int, variant: Variant, chunk: int = 32) -> torch.Tensor:
    """Logits ``(D, K, 256, 256)`` for ``(D, C, 256, 256)`` slices."""
    size = 256 if variant.full_resolution else input_size
    with torch.no_grad():
        return torch.cat([network(_lowres(part.float(), size, variant.lowres_mode)) for part in images.split(chunk)])


def _one_hot_volume(masks: torch.Tensor) -> torch.Tensor:
    """(D, K, H, W) -> (1, K, H, W, D) for MONAI's per-volume metrics."""
    return masks.permute(1, 2, 3, 0).unsqueeze(0).float()


def score_volumes(network: JNet, data: SweepData, input_size: int, variant: Variant) -> dict:
    """Foreground Dice and Jaccard per class and held-out volume (``per_volume``, NaN where a volume lacks the class),
    and their means over the volumes that have the class (``dice``, ``jaccard``)."""
    dice, jaccard = [], []
    for images, labels in zip(data.val_images, data.val_labels):  # one volume at a time
        logits = predict_slices(network, images, input_size, variant)
        if data.multilabel:
            pred, truth = (logits.sigmoid() > 0.5), labels.bool()
        else:
            pred = F.one_hot(logits.argmax(1), data.num_classes).permute(0, 3, 1, 2)
            truth = F.one_hot(labels[:, 0].long(), data.num_classes).permute(0, 3, 1, 2)
        y_pred, y = _one_hot_volume(pred), _one_hot_volume(truth)
        include = data.multilabel
        dice.append(compute_dice(y_pred, y, include_background=include, ignore_empty=True)[0].numpy())
        jaccard.append(compute_iou(y_pred, y, include_background=include, ignore_empty=True)[0].numpy())
    return {
        "dice": [float(v) for v in np.nanmean(np.stack(dice), axis=0)],
        "jaccard": [float(v) for v in np.nanmean(np.stack(jaccard), axis=0)],
        "per_volume": {
            name: {"dice": [float(v) for v in d], "jaccard": [float(v) for v in j]}
            for name, d, j in zip(data.val_names, dice, jaccard)
        },
    }
