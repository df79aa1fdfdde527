"""Which input size a resolution-switchable network runs at: the one asked for, or the largest that is fast enough."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
from torch import nn

from jnet.inferers.slice_batch import slices_per_call

__all__ = ["operating_size", "time_sizes"]

logger = logging.getLogger(__name__)


def time_sizes(
    network: nn.Module, sizes: Sequence[int], in_channels: int, batch_size: int | None, device: str | torch.device, budget_s: float = 1.0,
    stop_below: float | None = None,
) -> dict[int, float]:
    """Eval-mode images/s of ``network`` at each input size, smallest first, on ``batch_size`` random slices (None:
    the bundles' inferer batch for that size and device, :func:`jnet.inferers.slices_per_call`): each
    size one untimed call (allocation, the head's kernels) and timed calls for its share of ``budget_s`` (at least
    one): about ``budget_s`` in all, plus the untimed calls. With ``stop_below``, a size slower than that ends the
    timing (a larger input is slower still); the sizes not reached are not in the result."""
    was_training = network.training
    network.eval().to(device)
    rates: dict[int, float] = {}
    share = budget_s / max(len(sizes), 1)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    try:
        with torch.inference_mode():
            for size in sorted(sizes):
                batch = batch_size or slices_per_call(size, device)
                x = torch.randn(batch, in_channels, size, size, device=device)
                network(x)
                synchronize()  # the warm-up's queued work stays out of the timed window
                calls, start = 0, time.perf_counter()
                while calls == 0 or time.perf_counter() - start < share:
                    network(x)
                    calls += 1
                synchronize()
                rates[size] = calls * batch / (time.perf_counter() - start)
                if stop_below is not None and rates[size] < stop_below:
                    break
    finally:
        network.train(was_training)
    return rates


def operating_size(
    input_size: int | str,
    network: nn.Module,
    in_channels: int,
    min_images_per_s: float | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    budget_s: float = 1.0,
) -> int:
    """
    The input size a :class:`~jnet.networks.SwitchableJNet` runs at: ``input_size`` itself (checked against the
    network's sizes), or for ``"auto"`` the largest size whose measured throughput (:func:`time_sizes`, at
    ``batch_size`` slices per call - by default the inferer's for each size and device -, smallest first, stopping at the first size too slow; about ``budget_s`` seconds plus one
    untimed call per size, longer where one batch of the largest size takes longer) reaches
    ``min_images_per_s``, else the smallest; the choice and the figures are printed (and logged).
    """
    network = getattr(network, "module", network)  # DistributedDataParallel: the network it wraps
    sizes = tuple(getattr(network, "sizes", ()))
    if input_size != "auto":
        size = int(input_size)
        if sizes and size not in sizes:
            raise ValueError(f"input_size {size}: this network serves {', '.join(map(str, sizes))} (or auto).")
        return size
    if not sizes:
        raise ValueError("input_size auto needs a resolution-switchable network (SwitchableJNet).")
    if not min_images_per_s or min_images_per_s <= 0:
        raise ValueError("input_size auto needs --min_images_per_s N (images per second the device must reach).")
    rates = time_sizes(network, sizes, in_channels, batch_size, device, budget_s, stop_below=min_images_per_s)
    fast_enough = [size for size in rates if rates[size] >= min_images_per_s]
    chosen = max(fast_enough) if fast_enough else min(sizes)
    untimed = [s for s in sizes if s not in rates]
    figures = ", ".join(f"{s}x{s} {rates[s]:.0f}" for s in sorted(rates))
    if untimed:
        figures += f"; {', '.join(f'{s}x{s}' for s in untimed)} not timed (a smaller size was too slow)"
    verdict = f"the largest reaching {min_images_per_s:g} images/s" if fast_enough else f"none reaches {min_images_per_s:g} images/s: the smallest"
    batches = f"batch {batch_size}" if batch_size else "the inferer's slices per call"
    message = f"input_size auto: {chosen}x{chosen}, {verdict} on {torch.device(device).type} (images/s at {batches}: {figures})"
    print(message, flush=True)
    logger.info(message)
    return chosen
