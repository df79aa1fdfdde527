from .checks import check_image_header, check_pair_headers
from .decathlon import decathlon_datalist, image_datalist, read_dataset_json, split_folds
from .synthetic import make_prostate_case, write_prostate_task
