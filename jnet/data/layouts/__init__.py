"""The public dataset layouts: Decathlon tasks (``dataset.json``) and BraTS 2018-2021 case folders."""

from .brats import LAYOUTS, MODALITY_SUFFIXES, BratsLayout, brats_case, brats_label_names, brats_case_datalist, brats_case_dirs, brats_layout, labels_to_regions
from .decathlon import decathlon_datalist, image_datalist, read_dataset_json, select_split, split_folds
