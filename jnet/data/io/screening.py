"""Screen the inputs of a batch run one by one, so that one bad file is reported and skipped, not fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from jnet.errors import InputError

__all__ = ["ScreenedInputs", "screen_inputs"]

logger = logging.getLogger(__name__)
Source = TypeVar("Source")


@dataclass
class ScreenedInputs:
    """
    The inputs of a batch run after screening.

    Args:
        items: datalist items that passed every check, in input order.
        failures: one ``"<file>: <problem>"`` message per skipped input.
    """

    items: list[dict]
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.items) + len(self.failures)

    def summary(self) -> str:
        """One line: how many inputs were skipped and why."""
        problems = "; ".join(message.rstrip(".") for message in self.failures)
        return f"{len(self.failures)} of {self.total} input(s) skipped ({len(self.items)} processed): {problems}."

    def raise_if_failed(self) -> None:
        """Raise one :class:`InputError` with :meth:`summary` when any input was skipped: the last step of a batch
        run, so every good input is written first and the command still exits non-zero."""
        if self.failures:
            raise InputError(self.summary())


def screen_inputs(sources: Iterable[Source], to_item: Callable[[Source], dict]) -> ScreenedInputs:
    """
    ``to_item`` on every source (a file, a case folder): the items it returns, and the :class:`InputError`
    messages it raises, each logged as it is found. When no input passes, raises at once (the message of the
    only input, or all messages), since there is nothing to run.
    """
    items, failures = [], []
    for source in sources:
        try:
            items.append(to_item(source))
        except InputError as e:
            failures.append(str(e))
            logger.warning(f"skipped {e}")
    if not items:
        if len(failures) == 1:
            raise InputError(failures[0])
        raise InputError(f"none of the {len(failures)} inputs can be processed: " + "; ".join(m.rstrip(".") for m in failures) + ".")
    return ScreenedInputs(items, failures)
