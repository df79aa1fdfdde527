"""Per-size BatchNorm statistics of a resolution-switchable J-Net computed from the current weights (issue 16)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events
from torch import nn

from jnet.engines.prepare_batch import PrepareBatchAnySize, downsample_batch
from jnet.networks.switchable import size_norms

from .engine_state import is_new_best, unwrap_parallel

__all__ = ["SizeStatisticsCalibration", "calibrate_size_statistics"]


def calibrate_size_statistics(network: nn.Module, batches: Sequence[torch.Tensor], sizes: Sequence[int], mode: str = "area") -> None:
    """Set each size's running statistics in every per-size norm of ``network`` (:func:`jnet.networks.size_norms`: per-size
    statistics or whole per-size BatchNorms) to the mean of the batch statistics over ``batches`` (full-resolution
    images, downsampled to the size as in training): train-mode forward passes without gradient, the momentum ``1/k``
    at the k-th batch (PyTorch's cumulative average). The weights are untouched; the network's mode is restored."""
    norms = size_norms(network)
    if not norms or not batches:
        return
    momenta = [norm.momentum for norm in norms]
    was_training = network.training
    network.train()
    try:
        with torch.no_grad():
            for size in sizes:
                for k, images in enumerate(batches, 1):
                    for norm in norms:
                        norm.momentum = 1.0 / k
                    network(downsample_batch(images, size, mode))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        network.train(was_training)


class SizeStatisticsCalibration:
    """
    The post-training statistics of Universally Slimmable Networks (Yu & Huang, ICCV 2019), for input sizes: a
    :class:`jnet.networks.SwitchableJNet` with ``per_size_stats`` (or ``per_size_norm``: a whole BatchNorm per size)
    trains each iteration at one size, so the running statistics of a size trail the weights by the iterations spent at
    the other sizes. Before each validation this
    handler recomputes the validation size's statistics from the current weights on the trainer's latest batches
    (``PrepareBatchAnySize.recent``), and when the validation's key metric reaches a new best, every other size's
    too - so the weights that ``BestModelSaver`` then writes carry statistics of their own at every size. List it in
    the evaluator's handlers BEFORE ``BestModelSaver`` (handlers of one event run in the order they are attached).

    Args:
        network: the switchable network (unwrapped from ``DistributedDataParallel``).
        prepare_batch: the trainer's :class:`PrepareBatchAnySize`, keeping its latest batches (``keep_batches``).
        validation_size: the input size the evaluator feeds (the bundle's ``operating_size``).
        mode: the downsampling, as the bundle's ``lowres_mode``.
    """

    def __init__(self, network: nn.Module, prepare_batch: PrepareBatchAnySize, validation_size: int, mode: str = "area") -> None:
        if not prepare_batch.keep_batches:
            raise ValueError("SizeStatisticsCalibration needs the trainer's PrepareBatchAnySize to keep batches (keep_batches >= 1).")
        self.network = unwrap_parallel(network)
        self.prepare_batch = prepare_batch
        self.validation_size = int(validation_size)
        self.mode = mode
        self.sizes = tuple(int(s) for s in getattr(self.network, "sizes", ()))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.before_validation)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.after_validation)

    def before_validation(self, engine: Engine) -> None:
        calibrate_size_statistics(self.network, list(self.prepare_batch.recent), [self.validation_size], self.mode)

    def after_validation(self, engine: Engine) -> None:
        if is_new_best(engine):  # the weights BestModelSaver writes next
            others = [size for size in self.sizes if size != self.validation_size]
            calibrate_size_statistics(self.network, list(self.prepare_batch.recent), others, self.mode)
