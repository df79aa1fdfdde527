"""User-facing input errors: a clear one-line message naming the file and the problem, and a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys
from types import TracebackType

__all__ = ["InputError", "find_input_error", "install_excepthook"]


class InputError(ValueError):
    """A problem with the user's data or arguments (not a bug): its message names the file and the problem."""


MARKER = f"{InputError.__module__}.InputError: "  # how a traceback quotes an InputError


def find_input_error(error: BaseException | None) -> InputError | None:
    """The :class:`InputError` that caused ``error``, following MONAI's and Ignite's re-raising chains and a
    DataLoader worker's re-raise, which carries the worker's traceback in its message (the InputError is then
    rebuilt from the last ``jnet.errors.InputError: ...`` line it quotes)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        quoted = [line.strip() for line in str(error).splitlines() if line.strip().startswith(MARKER)]
        if quoted:
            return InputError(quoted[-1][len(MARKER) :])
        if isinstance(error, InputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _rank_prefix() -> str:
    """``[rankN]: `` inside an initialised torch.distributed process group (as torch prefixes its own errors)."""
    dist = sys.modules.get("torch.distributed")
    try:
        return f"[rank{dist.get_rank()}]: " if dist is not None and dist.is_available() and dist.is_initialized() else ""
    except (RuntimeError, ValueError):
        return ""


def install_excepthook() -> None:
    """
    Print an uncaught :class:`InputError` (also when wrapped by ``monai.bundle``'s config parser, Ignite or a
    DataLoader worker) as ``ERROR: <message>`` without a traceback (``[rankN]: ERROR: ...`` under torchrun); every
    other exception keeps Python's traceback. The process then exits with status 1 at once (``os._exit``, after
    flushing the logs and the console), except in an interactive session. Bundle configs call this first in
    ``initialize``.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        input_error = find_input_error(error)
        if input_error is None:
            previous(kind, error, tb)
            return
        message = " ".join(line.strip() for line in str(input_error).splitlines() if line.strip()) or kind.__name__
        line = f"{_rank_prefix()}ERROR: {message}\n"
        if hasattr(sys, "ps1") or sys.flags.interactive:  # a REPL: report, and keep the session
            sys.stderr.write(line)
            return
        # Exit now, without the interpreter's teardown: the error often comes from one of CacheDataset's loader
        # threads while others are still inside torch, and tearing torch's thread pools down under them aborts
        # the process ("terminate called without an active exception", exit 134) after the clean message. The
        # line goes straight to file descriptor 2: torch.distributed's own excepthook wraps this one with
        # sys.stderr redirected to a buffer it would only print after we return.
        logging.shutdown()
        sys.stdout.flush()
        if sys.__stderr__ is not None:
            sys.__stderr__.flush()
        os.write(2, line.encode())
        os._exit(1)

    if getattr(previous, "_jnet_hook", False):
        return
    hook._jnet_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook
