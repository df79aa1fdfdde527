"""Screen the inputs of a batch run one by one, so that one bad file is reported and skipped, not fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from jnet.errors import InputError, find_input_error

__all__ = ["ScreenedInputs", "screen_inputs", "SkipFailedCases"]

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
    load_failures: int = 0  # items that passed screening but failed when their voxels were read

    @property
    def total(self) -> int:
        return len(self.items) + len(self.failures) - self.load_failures

    def add_load_failure(self, message: str) -> None:
        """An item that passed the header screening and failed when it was loaded (its voxels): skipped too."""
        self.failures.append(message)
        self.load_failures += 1
        logger.warning(f"skipped {message}")

    def summary(self) -> str:
        """One line: how many inputs were skipped and why."""
        problems = "; ".join(message.rstrip(".") for message in self.failures)
        processed = len(self.items) - self.load_failures
        return f"{len(self.failures)} of {self.total} input(s) skipped ({processed} processed): {problems}."

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


class SkipFailedCases:
    """
    A data loader whose batches that fail with an :class:`~jnet.errors.InputError` while loading (an unreadable,
    truncated or corrupt file, NaN voxels, sequences that cannot be joined) are skipped and recorded in ``inputs``
    (:meth:`ScreenedInputs.add_load_failure`), so a batch run goes on past a bad case and every good one is
    written; :meth:`ScreenedInputs.raise_if_failed` reports them all at the end. Each file is thus decompressed once,
    when it is segmented (the screening before the run reads headers only). Use with ``batch_size=1`` (one case per
    batch). Other exceptions propagate.

    Args:
        loader: the data loader (its workers keep going after a failed item: PyTorch re-raises per index).
        inputs: the screened inputs of the run.
    """

    def __init__(self, loader, inputs: ScreenedInputs) -> None:
        self.loader = loader
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as error:  # noqa: BLE001 - only InputErrors are skipped, the rest is re-raised
                input_error = find_input_error(error)
                if input_error is None:
                    raise
                self.inputs.add_load_failure(str(input_error))
                continue
            yield batch
