"""Checks for the multi-GPU / multi-node bundle configs (``multi_gpu_train.json``, ``multi_gpu_evaluate.json``)."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["TORCHRUN_VARIABLES", "end_process_group", "require_torchrun", "torchrun_env"]

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


def end_process_group(network: torch.nn.Module) -> None:
    """
    A torchrun job's last step (``finalize`` of ``multi_gpu_train.json`` / ``multi_gpu_evaluate.json``): wait for
    every rank, let the ``DistributedDataParallel`` wrapper ``network`` let go of the process group, then destroy it.

    ``destroy_process_group`` alone leaves the group alive inside the wrapper (its ``reducer``, ``logger`` and
    ``process_group``), so the group ended during interpreter shut-down, where now and then a gloo rank was aborted
    by libstdc++ ("terminate called without an active exception", SIGABRT, exit code -6: a failed job although
    every file was written; seen in full test runs here, torch 2.13). The barrier keeps a rank from leaving while
    another still saves.
    ``network.module`` stays usable; the wrapper no longer communicates. Does nothing without a process group.

    Args:
        network: the job's ``DistributedDataParallel`` (another module is left as it is: only the barrier and
            the destroy).
    """
    import gc

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    dist.barrier()
    if isinstance(network, torch.nn.parallel.DistributedDataParallel):
        for name in ("logger", "reducer", "process_group"):  # what the wrapper holds the group by
            vars(network).pop(name, None)
    gc.collect()
    dist.destroy_process_group()


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
