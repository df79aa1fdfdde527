"""Save the network whenever the validation's key metric improves, atomically (replaces MONAI's CheckpointSaver)."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from torch import nn

from .atomic import atomic_save, is_main_process

__all__ = ["BestModelSaver"]


class BestModelSaver:
    """
    Write ``network.state_dict()`` (a plain state dict, for export and ``CheckpointLoader``) to ``filepath``
    whenever the evaluator's key metric reaches a new best - MONAI's ``Workflow`` tracks it in
    ``engine.state.best_metric`` / ``best_metric_epoch``, with the same strict ``>`` as ``CheckpointSaver``.

    Unlike MONAI's ``CheckpointSaver(save_key_metric=True, key_metric_filename=...)``, which deletes the previous
    file before writing the new one in place, the file is replaced atomically (:func:`atomic_save`): a kill
    at any moment leaves the previous best model or the new one, never none or a torn file.

    Args:
        filepath: the weights file, e.g. ``models/model.pt``.
        network: the network whose weights are saved (unwrapped from ``DistributedDataParallel``).
    """

    def __init__(self, filepath: str, network: nn.Module) -> None:
        self.filepath = filepath
        self.network = network
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if getattr(engine.state, "best_metric_epoch", -1) != engine.state.epoch or not is_main_process():
            return
        network = self.network.module if hasattr(self.network, "module") else self.network
        atomic_save(network.state_dict(), self.filepath)
        self.logger.info(f"saved the new best model ({engine.state.key_metric_name} {engine.state.best_metric:.4f}) to {self.filepath}")
