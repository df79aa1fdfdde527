"""Data: the datalists the bundles call (:mod:`.datalists`), the dataset layouts (:mod:`.layouts`: Decathlon,
BraTS) and file I/O (:mod:`.io`: reader, writer, header checks, screening). The synthetic generators are tools
(:mod:`jnet.tools.synthetic`), not imported by a bundle run."""

from .datalists import inference_datalist, inference_inputs, labelled_datalist
from .io import CheckedNibabelReader, NibabelWriterNoResample, mask_name_formatter, ScreenedInputs, SkipFailedCases, check_image_header, check_pair_headers, screen_inputs
from .layouts import LAYOUTS, brats_case, brats_case_datalist, decathlon_datalist, image_datalist, labels_to_regions, read_dataset_json, split_folds
