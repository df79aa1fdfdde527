"""
The ground floor: the bundles' pre- and post-processing as numpy + nibabel functions, and the parameters that
describe them (``deploy.json``). The bundles' MONAI transforms (:mod:`jnet.transforms.pipeline`) and the
standalone runner (:mod:`jnet.deploy.runner`) both call these functions, so they compute the same masks.

Imports nothing of the package above it and nothing but numpy and nibabel; Python 3.6 syntax throughout (the
runner's kit copies this folder to the Jetson Nano, whose JetPack 4.6 has Python 3.6).

The steps, in the order the bundles run them: 1. load (channel first), 2. reorient to ``axcodes`` (RAS),
3. z-normalise per channel, 4. pad each slice to a centred square, 5. bring it to ``output_size`` (anti-aliased
trilinear resize, or centred pad/crop), 6. downsample to ``input_size`` (area mean by default), 7. the network on
every slice, 8. sigmoid or softmax, 9. undo 5 (linear resize of the probabilities, or crop/pad) and 4, 10. argmax,
or nested regions -> label codes, 11. undo 2, 12. save with the input's shape and affine.
"""

from .params import (
    ACTIVATIONS,
    GRID_TYPES,
    LABEL_TYPES,
    LOWRES_MODES,
    PARAMS_FILE,
    PARAMS_FORMAT,
    REQUIRED_PARAMS,
    RunnerError,
    at_input_size,
    check_params,
    kit_files,
    load_params,
    model_for_size,
    model_input_size,
)
from .dicom import dicom_series_datasets, dicom_series_header, is_dicom_folder, mask_name_clash, mask_stem, read_dicom_series
from .grids import OBLIQUE_CHOICES, OBLIQUE_WARNING_DEGREES, SAME_GRID_TOLERANCE, axis_aligned_grid, grid_offset_mm, join_sequences, oblique_warning, obliquity_degrees, overlap_fraction, resample_to_grid, same_grid, spacing, to_axis_aligned
from .sequences import group_sequences, sequence_files
from .resample import SLAB_SLICES, grid_start, pad_or_crop, resize_slices, undo_pad_or_crop
from .steps import (
    activate,
    apply_orientation,
    by_slabs,
    crop_square,
    flip_in_place,
    from_grid,
    load_case,
    load_volume,
    normalize,
    normalize_volume,
    orientations,
    oriented_in_place,
    oriented_view,
    pad_square,
    postprocess,
    preprocess,
    read_voxels,
    reorient,
    to_grid,
    to_labels,
    uniform_mask_warning,
    unscaled_gzip,
)
