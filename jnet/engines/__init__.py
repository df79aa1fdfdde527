from .prepare_batch import PrepareBatchHighRes
