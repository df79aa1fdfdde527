from .slice_batch import SliceBatchInferer
