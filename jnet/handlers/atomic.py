"""Write a file so that a kill at any moment leaves either the old or the new content, never a torn file."""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["atomic_save", "is_main_process"]


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised ``torch.distributed`` group (only rank 0 writes)."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0


def atomic_save(obj: Any, path: str) -> None:
    """
    ``torch.save(obj, path)`` through a temporary file in the same folder (``.<name>.partial``), flushed to disk,
    then ``os.replace``-d onto ``path``: the rename is atomic on POSIX and Windows, so ``path`` always holds a
    complete file. A save that fails or is killed leaves ``path`` untouched; the next save overwrites the
    partial file.

    Args:
        obj: what to save (keep it to tensors and plain containers, so it loads with ``weights_only=True``).
        path: the destination file; its folder is created when missing.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(path)}.partial")
    try:
        with open(partial, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
