"""Checks for the multi-GPU / multi-node bundle configs (``multi_gpu_train.json``, ``multi_gpu_evaluate.json``)."""

from __future__ import annotations

import os

from .errors import InputError

__all__ = ["TORCHRUN_VARIABLES", "require_torchrun"]

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def require_torchrun(config_file: str) -> None:
    """
    Stop with a clear :class:`InputError` when ``config_file`` is run without ``torchrun`` (or another launcher
    that sets the ``env://`` rendezvous variables), instead of a ``KeyError`` traceback from ``LOCAL_RANK``.

    Args:
        config_file: the override being run, named in the message.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise InputError(
            f"configs/{config_file}: {', '.join(missing)} not set; start it with "
            "`torchrun --nproc_per_node=N -m monai.bundle run ...` (commands in the bundle's docs/README.md)."
        )
