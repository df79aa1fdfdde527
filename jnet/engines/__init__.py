from .prepare_batch import PrepareBatchAnySize, PrepareBatchHighRes, downsample_batch
