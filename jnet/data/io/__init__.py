"""File I/O of the bundles: the checked NIfTI reader, the writer, header checks and per-input screening."""

from .checks import case_files, check_case_headers, check_image_header, check_pair_headers
from .reader import CheckedNibabelReader
from .screening import ScreenedInputs, SkipFailedCases, screen_inputs
from .writer import NibabelWriterNoResample, mask_name_formatter
