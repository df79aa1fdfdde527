"""Validation every ``interval`` epochs and after the last one."""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler

__all__ = ["IntervalAndLastValidation"]


class IntervalAndLastValidation(ValidationHandler):
    """
    MONAI's epoch-level ``ValidationHandler`` that also validates after the trainer's last epoch when ``interval``
    does not divide ``max_epochs``: ``--epochs 1`` of a bundle that validates every 2nd epoch still validates (and
    so writes ``models/model.pt``), and the last epochs of training are never left unscored. Iteration-level
    validation (``epoch_level=False``) is MONAI's unchanged.

    Args:
        interval: validate every ``interval`` epochs (and after the last).
        validator: the evaluator to run.
        epoch_level: ``False`` gives MONAI's iteration-level behaviour.
        exec_at_start: also validate before the first epoch.
    """

    def attach(self, engine: Engine) -> None:
        if not self.epoch_level:
            super().attach(engine)
            return
        interval = int(self.interval)
        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=lambda e, epoch: epoch % interval == 0 or epoch == e.state.max_epochs), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)
