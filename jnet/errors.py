"""User-facing input errors: a clear one-line message naming the file and the problem, and a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys
from types import TracebackType

__all__ = ["InputError", "find_input_error", "install_excepthook"]


class InputError(ValueError):
    """A problem with the user's data or arguments (not a bug): its message names the file and the problem."""


def find_input_error(error: BaseException | None) -> InputError | None:
    """The :class:`InputError` that caused ``error``, following MONAI's and Ignite's re-raising chains and a
    DataLoader worker's re-raise (rebuilt from the ``jnet.errors.InputError: ...`` line it quotes)."""
    seen: set[int] = set()
    marker = f"{InputError.__module__}.InputError: "
    while error is not None and id(error) not in seen:
        if isinstance(error, InputError):
            return error
        # a DataLoader worker's error comes back as another type (MONAI's transform RuntimeError), the worker's
        # traceback - ending in the InputError's own line - in its message
        lines = [line.strip() for line in str(error).splitlines() if line.strip().startswith(marker)]
        if lines:
            return InputError(lines[-1][len(marker) :])
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def install_excepthook() -> None:
    """
    Print an uncaught :class:`InputError` (also when wrapped by ``monai.bundle``'s config parser, Ignite or a
    DataLoader worker) as ``ERROR: <message>`` without a traceback; every other exception keeps Python's
    traceback. The process then exits with status 1 at once (``os._exit``, after flushing the logs and the
    console). Bundle configs call this first in ``initialize``.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        input_error = find_input_error(error)
        if input_error is None:
            previous(kind, error, tb)
            return
        # a DataLoader worker re-raises with the worker's traceback in the message: keep its last line only
        lines = str(input_error).strip().splitlines() or [kind.__name__]
        print(f"ERROR: {lines[-1].removeprefix(f'{InputError.__module__}.InputError: ')}", file=sys.stderr)
        # Exit now, without the interpreter's teardown: the error often comes from one of CacheDataset's loader
        # threads while others are still inside torch, and tearing torch's thread pools down under them aborts
        # the process ("terminate called without an active exception", exit 134) after the clean message.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    if getattr(previous, "_jnet_hook", False):
        return
    hook._jnet_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook
