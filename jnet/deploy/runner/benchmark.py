"""Network-only throughput of a loaded model on random inputs."""

import time

import numpy as np


def benchmark(model, params, batch_size=32, seconds=5.0):
    """Network-only throughput on random inputs: ``{batch: images/s}`` for batch 1 and ``batch_size``."""
    results = {}
    for batch in sorted({1, min(batch_size, model.max_batch or batch_size)}):
        shape = (batch, params["in_channels"], params["input_size"], params["input_size"])
        data = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
        for _ in range(3):
            model.run(data)  # warm-up (lazy allocation, kernel selection)
        runs, start = 0, time.time()
        while runs < 3 or time.time() - start < seconds:
            model.run(data)
            runs += 1
        results[batch] = batch * runs / (time.time() - start)
    return results
