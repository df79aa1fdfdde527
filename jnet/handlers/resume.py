"""A resume checkpoint of a training run: saved atomically after every epoch, restored with ``--resume True``."""

from __future__ import annotations

import logging
import os
import pickle

import torch
from ignite.engine import Engine, Events

from jnet.checkpoints import mismatch_detail
from jnet.errors import InputError

from .atomic import atomic_save, is_main_process
from .engine_state import unwrap_parallel

__all__ = ["ResumeCheckpoint"]

TRAINER_KEY = "trainer"
BEST_KEY = "best_metric"
SCALER_KEY = "grad_scaler"


class ResumeCheckpoint:
    """
    Keep what a killed training needs to continue in its own file beside ``model.pt`` (which stays a plain state
    dict for export): the state dicts of ``save_dict`` (network, optimizer, learning-rate scheduler, ...), the
    trainer's epoch and iteration, its AMP gradient scaler (``SupervisedTrainer(amp=True).scaler``: the loss scale
    it has settled on, so a resumed run does not start again at 65536 and skip steps), and the evaluator's best key
    metric (so a resumed run only replaces ``model.pt`` with a better model). Written atomically (:func:`~jnet.handlers.atomic.atomic_save`) after every
    ``save_interval`` epochs, once validation has run.

    With ``resume=True`` the checkpoint is read (``weights_only=True``), checked and loaded into ``save_dict``'s
    objects when the handler attaches (a bad one stops before any work), and the trainer's epochs, scaler and the
    best metric are restored when it starts; the run continues at the next epoch up to the trainer's
    ``max_epochs`` (which may be raised to train longer).

    Args:
        filepath: the checkpoint file, e.g. ``models/model_resume.pt``.
        save_dict: objects with ``state_dict``/``load_state_dict`` to keep, e.g. ``{"model": net, "optimizer": opt}``;
            the trainer this handler is attached to is kept as well (it cannot be referenced from its own handlers).
        evaluator: the validation evaluator whose ``best_metric`` / ``best_metric_epoch`` are kept.
        resume: restore from ``filepath`` before training.
        save_interval: epochs between saves.
        map_location: ``torch.load``'s ``map_location`` when resuming.
    """

    def __init__(
        self,
        filepath: str,
        save_dict: dict,
        evaluator: Engine | None = None,
        resume: bool = False,
        save_interval: int = 1,
        map_location: str | torch.device | None = None,
    ) -> None:
        if {TRAINER_KEY, BEST_KEY, SCALER_KEY} & set(save_dict):
            raise ValueError(f"save_dict keys '{TRAINER_KEY}', '{BEST_KEY}' and '{SCALER_KEY}' are reserved.")
        self.filepath = filepath
        self.save_dict = save_dict
        self.evaluator = evaluator
        self.resume = resume
        self.save_interval = save_interval
        self.map_location = map_location
        self._carried_scaler_state: dict = {}
        self._checkpoint: dict = {}
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """With ``resume``: read and check the checkpoint and load ``save_dict`` now - while the bundle's config is
        still being parsed, so a missing, tampered or mismatched checkpoint stops with one line before the engine
        runs - and restore the trainer's progress when it starts."""
        if self.resume:  # keep what is applied when the trainer starts, not the loaded weights
            checkpoint = self._read_checkpoint(engine)
            self._checkpoint = {key: checkpoint[key] for key in (TRAINER_KEY, SCALER_KEY, BEST_KEY) if key in checkpoint}
            engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)

    @staticmethod
    def _scaler(engine: Engine) -> torch.amp.GradScaler | None:
        return getattr(engine, "scaler", None) if getattr(engine, "amp", False) else None

    def _load_scaler(self, engine: Engine, state: dict | None) -> None:
        scaler = self._scaler(engine)
        if state is None or scaler is None:  # a checkpoint written without AMP, or a run without it
            return
        if scaler.is_enabled():
            if state:  # empty: saved by a disabled scaler, the new one starts afresh
                scaler.load_state_dict(state)
        else:
            self._carried_scaler_state = dict(state)

    def save(self, engine: Engine) -> None:
        if not is_main_process():
            return
        checkpoint = {key: unwrap_parallel(obj).state_dict() for key, obj in self.save_dict.items()}
        checkpoint[TRAINER_KEY] = engine.state_dict()
        scaler = self._scaler(engine)
        if scaler is not None:
            # a disabled scaler (AMP without CUDA) has no state: pass on the one it was resumed from, if any
            checkpoint[SCALER_KEY] = scaler.state_dict() if scaler.is_enabled() else self._carried_scaler_state
        if self.evaluator is not None:
            state = self.evaluator.state
            checkpoint[BEST_KEY] = {"value": float(state.best_metric), "epoch": int(state.best_metric_epoch)}
        atomic_save(checkpoint, self.filepath)

    def _read_checkpoint(self, engine: Engine) -> dict:
        """The checked checkpoint, with ``save_dict``'s objects loaded from it; :class:`InputError` naming the file."""
        if not os.path.isfile(self.filepath):
            raise InputError(f"{self.filepath}: no resume checkpoint to continue from (train without --resume True to start a new run).")
        try:
            checkpoint = torch.load(self.filepath, map_location=self.map_location, weights_only=True)
        except pickle.UnpicklingError as e:  # weights_only refuses anything but tensors and plain containers
            # torch's message goes on to advise weights_only=False ("will likely succeed"): only the object it met
            lines = [line.strip() for line in str(e).splitlines() if line.strip() and "weights_only" not in line.lower()
                     and "weights only load failed" not in line.lower() and "documentation" not in line.lower()]
            what = lines[0] if lines else "unpickling them would run code"
            raise InputError(f"{self.filepath}: refused - it holds objects other than weights ({what}); never load it unsafely.") from e
        except (RuntimeError, EOFError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{self.filepath}: not a readable checkpoint ({first}).") from e
        try:
            for key, obj in self.save_dict.items():
                unwrap_parallel(obj).load_state_dict(checkpoint[key])
            trainer_state = dict(checkpoint[TRAINER_KEY])
            int(trainer_state["iteration"]), int(trainer_state["epoch_length"])
            _check_scaler_state(checkpoint.get(SCALER_KEY))
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise InputError(
                f"{self.filepath}: the resume checkpoint does not match this training configuration ({mismatch_detail(e)})."
            ) from e
        if engine.state.max_epochs is not None:  # a MONAI trainer knows its epochs already: refuse before it runs
            self._epochs_done(checkpoint, engine.state.max_epochs)
        return checkpoint

    def _epochs_done(self, checkpoint: dict, max_epochs: int) -> int:
        trainer_state = checkpoint[TRAINER_KEY]
        done = int(trainer_state["iteration"]) // max(int(trainer_state["epoch_length"]), 1)
        if done > max_epochs:
            raise InputError(f"{self.filepath}: the run already trained {done} epochs; set --epochs to at least {done}.")
        return done

    def load(self, engine: Engine) -> None:
        """Restore the trainer's progress (the epochs done), its AMP scaler and the best metric when it starts."""
        checkpoint = self._checkpoint
        max_epochs = engine.state.max_epochs
        done = self._epochs_done(checkpoint, max_epochs)
        self._load_scaler(engine, checkpoint.get(SCALER_KEY))  # the trainer makes its scaler in run()
        # restart after the last finished epoch; this run's --epochs may extend the killed one
        epoch_length = engine.state.epoch_length or int(checkpoint[TRAINER_KEY]["epoch_length"])
        engine.load_state_dict({"epoch": done, "epoch_length": epoch_length, "max_epochs": max_epochs})
        if self.evaluator is not None and BEST_KEY in checkpoint:
            self.evaluator.state.best_metric = checkpoint[BEST_KEY]["value"]
            self.evaluator.state.best_metric_epoch = checkpoint[BEST_KEY]["epoch"]
        self.logger.info(f"resumed from {self.filepath} after epoch {engine.state.epoch} of {max_epochs}")


SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


def _check_scaler_state(state) -> None:
    """A GradScaler state dict, an empty one (a disabled scaler's) or None (no AMP); TypeError/KeyError otherwise."""
    if state is None:
        return
    if not isinstance(state, dict):
        raise TypeError(f"'{SCALER_KEY}' is a {type(state).__name__}, not a GradScaler state dict")
    missing = [key for key in SCALER_KEYS if key not in state]
    if state and missing:
        raise KeyError(f"'{SCALER_KEY}' lacks {', '.join(missing)}")
