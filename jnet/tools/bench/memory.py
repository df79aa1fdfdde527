"""Peak heap memory of a CPU forward pass, sampled at every module boundary (glibc ``mallinfo2``)."""

from __future__ import annotations

import ctypes
import ctypes.util

import torch
from torch import nn

__all__ = ["heap_in_use", "peak_forward_memory"]


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    ]


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return libc


_LIBC = _libc()


def heap_in_use() -> int | None:
    """Bytes currently allocated through malloc (arena + mmap'd blocks); ``None`` without glibc >= 2.33."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def peak_forward_memory(model: nn.Module, inputs: torch.Tensor) -> int | None:
    """Peak increase of the heap during one no-grad forward (inputs excluded, the output included), sampled
    after every module's forward; temporaries inside one module are missed, so this is a lower bound."""
    if heap_in_use() is None:
        return None
    base = heap_in_use()
    peak = 0

    def sample(*_: object) -> None:
        nonlocal peak
        peak = max(peak, heap_in_use() - base)

    handles = [m.register_forward_hook(sample) for m in model.modules()]
    try:
        with torch.no_grad():
            output = model(inputs)
        sample()
        del output
    finally:
        for handle in handles:
            handle.remove()
    return peak
