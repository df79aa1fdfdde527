"""User-facing input errors: a clear one-line message naming the file and the problem, and a non-zero exit."""

from __future__ import annotations

import sys
from types import TracebackType

__all__ = ["InputError", "find_input_error", "install_excepthook"]


class InputError(ValueError):
    """A problem with the user's data or arguments (not a bug): its message names the file and the problem."""


def find_input_error(error: BaseException | None) -> InputError | None:
    """The :class:`InputError` that caused ``error``, following MONAI's and Ignite's re-raising chains."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, InputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def install_excepthook() -> None:
    """
    Print an uncaught :class:`InputError` (also when wrapped by ``monai.bundle``'s config parser, Ignite or a
    DataLoader worker) as ``ERROR: <message>`` without a traceback; every other exception keeps Python's
    traceback. The process still exits with status 1. Bundle configs call this first in ``initialize``.
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

    if getattr(previous, "_jnet_hook", False):
        return
    hook._jnet_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook
