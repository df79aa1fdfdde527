"""Checks for the multi-GPU / multi-node bundle configs (``multi_gpu_train.json``, ``multi_gpu_evaluate.json``)."""

from __future__ import annotations

import os
import socket

from .errors import InputError

__all__ = ["TORCHRUN_VARIABLES", "require_torchrun", "torchrun_env"]

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


def torchrun_env(threads: int) -> dict[str, str]:
    """This environment without a launcher's rendezvous variables (each command starts its own), with
    ``OMP_NUM_THREADS=threads``; gloo is pointed at the loopback device where the host name does not resolve
    (it binds to that name's address)."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    env["OMP_NUM_THREADS"] = str(threads)
    try:
        socket.gethostbyname(socket.gethostname())
    except OSError:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env
