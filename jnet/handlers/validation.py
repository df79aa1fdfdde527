"""Validation every ``interval`` epochs and after the last one."""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler

from jnet.errors import InputError

__all__ = ["IntervalAndLastValidation", "validation_epochs"]


def is_validation_epoch(epoch: int, interval: int, max_epochs: int) -> bool:
    """Whether :class:`IntervalAndLastValidation` validates after ``epoch``: a multiple of ``interval``, or the last."""
    return epoch % interval == 0 or epoch == max_epochs


def validation_epochs(epochs: int, interval: int) -> list[int]:
    """The epochs after which a training of ``epochs`` validates every ``interval`` epochs and after the last."""
    return [epoch for epoch in range(1, epochs + 1) if is_validation_epoch(epoch, interval, epochs)]


class IntervalAndLastValidation(ValidationHandler):
    """
    MONAI's epoch-level ``ValidationHandler`` that also validates after the trainer's last epoch when ``interval``
    does not divide ``max_epochs``: ``--epochs 1`` of a bundle that validates every 2nd epoch still validates (and
    so writes ``models/model.pt``), and the last epochs of training are never left unscored (``--epochs 12
    --val_interval 5`` validates after epochs 5, 10 and 12). Iteration-level validation (``epoch_level=False``) is
    MONAI's unchanged.

    Args:
        interval: validate every ``interval`` epochs (and after the last), at least 1.
        validator: the evaluator to run.
        epoch_level: ``False`` gives MONAI's iteration-level behaviour.
        exec_at_start: also validate before the first epoch.
    """

    def attach(self, engine: Engine) -> None:
        if not self.epoch_level:
            super().attach(engine)
            return
        interval = int(self.interval)
        if interval < 1:
            raise InputError(f"--val_interval must be at least 1, got {self.interval}.")
        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=lambda e, epoch: is_validation_epoch(epoch, interval, e.state.max_epochs)), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)
