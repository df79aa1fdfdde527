from .brats import LAYOUTS, brats_case, brats_case_datalist, labelled_datalist, labels_to_regions
from .checks import check_image_header, check_pair_headers
from .decathlon import decathlon_datalist, image_datalist, read_dataset_json, split_folds
from .inference import inference_datalist, inference_inputs
from .reader import CheckedNibabelReader, check_voxel_data
from .screening import ScreenedInputs, screen_inputs
from .synthetic import make_prostate_case, write_prostate_task
from .synthetic_brats import make_brats_case, write_brats_task
from .writer import NibabelWriterNoResample
