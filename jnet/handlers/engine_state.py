"""What the handlers read of an ignite engine and its network: the module under a parallel wrapper, a new best."""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine

__all__ = ["unwrap_parallel", "is_new_best"]


def unwrap_parallel(obj: Any) -> Any:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` (their ``.module``); anything else as it is."""
    return obj.module if isinstance(obj, torch.nn.Module) and hasattr(obj, "module") else obj


def is_new_best(engine: Engine) -> bool:
    """True at the epoch whose key metric is a new best: MONAI's ``Workflow`` sets ``best_metric_epoch`` to it (its
    comparison runs before the handlers of ``EPOCH_COMPLETED``)."""
    return getattr(engine.state, "best_metric_epoch", -1) == engine.state.epoch
