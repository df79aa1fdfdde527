from .prepare_batch import PrepareBatchAnySize, PrepareBatchHighRes, downsample_batch, level_weighted_cycle, weighted_cycle
