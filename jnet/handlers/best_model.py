"""Save the network whenever the validation's key metric improves, atomically (replaces MONAI's CheckpointSaver)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from ignite.engine import Engine, Events
from torch import nn

from jnet.provenance import command_overrides, datalist_summary, sha256_file, training_record_path, versions, write_record

from .atomic import atomic_save, is_main_process
from .engine_state import is_new_best, unwrap_parallel

__all__ = ["BestModelSaver"]


class BestModelSaver:
    """
    Write ``network.state_dict()`` (a plain state dict, for export and ``CheckpointLoader``) to ``filepath``
    whenever the evaluator's key metric reaches a new best - MONAI's ``Workflow`` tracks it in
    ``engine.state.best_metric`` / ``best_metric_epoch``, with the same strict ``>`` as ``CheckpointSaver``.

    Unlike MONAI's ``CheckpointSaver(save_key_metric=True, key_metric_filename=...)``, which deletes the previous
    file before writing the new one in place, the file is replaced atomically (:func:`atomic_save`): a kill
    at any moment leaves the previous best model or the new one, never none or a torn file.

    With ``provenance``, each save also writes ``<filepath stem>_training.json``
    (:func:`jnet.provenance.training_record_path`): what these weights were trained on and how - the data's
    summary, the epoch and metric, the run's epochs and command-line overrides, the package versions - with the
    weights' sha256, so ``jnet pack`` can tell the record belongs to the weights it ships.

    Args:
        filepath: the weights file, e.g. ``models/model.pt``.
        network: the network whose weights are saved (unwrapped from ``DistributedDataParallel``).
        provenance: ``{"dataset_dir": ..., "datalist": [...], "epochs": ..., "input_size": ...}`` (any of them).
    """

    def __init__(self, filepath: str, network: nn.Module, provenance: dict | None = None) -> None:
        self.filepath = filepath
        self.network = network
        self.provenance = provenance
        self.logger = logging.getLogger(__name__)

    def _record(self, engine: Engine) -> dict:
        given = dict(self.provenance or {})
        datalist: Sequence = given.pop("datalist", []) or []
        return {
            "model_file": os.path.basename(self.filepath),
            "model_sha256": sha256_file(self.filepath),
            "saved_after_epoch": int(engine.state.epoch),
            "key_metric": engine.state.key_metric_name,
            "best_metric": float(engine.state.best_metric),
            **datalist_summary(given.pop("dataset_dir", None), datalist),
            **given,
            "command": command_overrides(),
            "versions": versions(),
        }

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_new_best(engine) or not is_main_process():
            return
        network = unwrap_parallel(self.network)
        atomic_save(network.state_dict(), self.filepath)
        if self.provenance is not None:
            write_record(training_record_path(self.filepath), self._record(engine))
        self.logger.info(f"saved the new best model ({engine.state.key_metric_name} {engine.state.best_metric:.4f}) to {self.filepath}")
