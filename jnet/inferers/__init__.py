from .slice_batch import SliceBatchInferer, slices_per_call
