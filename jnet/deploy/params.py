"""The standalone runner's ``deploy.json``, derived from a bundle's own ``inference.json`` (one source of truth).

Each pre- and post-processing step of the bundle is read from its instantiated MONAI transform; a pipeline that
differs from what :mod:`jnet.deploy.standalone` implements is refused with a message naming the step, so the
runner cannot silently compute something else than the bundle.
"""

from __future__ import annotations

import warnings

from monai.bundle import ConfigParser
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    EnsureTyped,
    Invertd,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    Resized,
    ResizeWithPadOrCropd,
    SaveImaged,
)

from jnet.data.brats import LAYOUTS
from jnet.errors import InputError
from jnet.export import INPUT_NAME, OUTPUT_NAME
from jnet.transforms import CheckChannelsd, LowResInputd, RegionsToLabelsd, SquarePadd

from .standalone import PARAMS_FORMAT, RunnerError, check_params

__all__ = ["deploy_params"]

PREPROCESSING = (LoadImaged, CheckChannelsd, Orientationd, EnsureTyped, NormalizeIntensityd, SquarePadd, (Resized, ResizeWithPadOrCropd), LowResInputd)
POSTPROCESSING = (Activationsd, Invertd, (AsDiscreted, RegionsToLabelsd), SaveImaged)


def _names(kinds: tuple) -> str:
    return ", ".join("/".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__ for kind in kinds)


def _check_steps(transforms: list, kinds: tuple, section: str, source: str) -> None:
    found = [type(t).__name__ for t in transforms]
    if len(transforms) != len(kinds) or not all(isinstance(t, k) for t, k in zip(transforms, kinds)):
        raise InputError(
            f"{source}: '{section}' is [{', '.join(found)}]; the standalone runner implements [{_names(kinds)}] - "
            "extend jnet/deploy/standalone.py (and its test) before exporting this bundle."
        )


def _unsupported(source: str, what: str) -> InputError:
    return InputError(f"{source}: {what} is not implemented by the standalone runner (jnet/deploy/standalone.py).")


def _grid(transform: Resized | ResizeWithPadOrCropd, output_size: int, source: str) -> dict:
    if isinstance(transform, Resized):  # the options are per key on the dict transform, the size on its resizer
        size, mode = list(transform.resizer.spatial_size), str(transform.mode[0])
        if size != [output_size, output_size, -1] or mode not in ("trilinear", "bilinear"):
            raise _unsupported(source, f"Resized(spatial_size={size}, mode={mode})")
        if transform.align_corners[0] is not None or transform.anti_aliasing_sigma[0] is not None:
            raise _unsupported(source, "Resized with align_corners or anti_aliasing_sigma")
        return {"type": "resize", "anti_aliasing": bool(transform.anti_aliasing[0])}
    padcrop = transform.padder  # MONAI names the ResizeWithPadOrCrop inside ResizeWithPadOrCropd "padder"
    if list(padcrop.padder.spatial_size) != [output_size, output_size, -1] or padcrop.padder.method != "symmetric":
        raise _unsupported(source, f"ResizeWithPadOrCropd(spatial_size={padcrop.padder.spatial_size})")
    if [str(m) for m in transform.mode] != ["constant"] or padcrop.padder.kwargs:  # one mode per key
        raise _unsupported(source, f"ResizeWithPadOrCropd(mode={transform.mode})")
    return {"type": "pad_or_crop"}


def _labels(transform: AsDiscreted | RegionsToLabelsd, source: str) -> dict:
    if isinstance(transform, RegionsToLabelsd):
        codes = LAYOUTS[transform.layout]
        return {
            "type": "regions",
            "threshold": float(transform.threshold),
            "codes": {"edema": codes.edema, "core": codes.core, "enhancing": codes.enhancing},
            "layout": transform.layout,
        }
    if not transform.argmax[0] or transform.threshold[0] is not None or transform.to_onehot[0]:
        raise _unsupported(source, "AsDiscreted other than argmax")
    return {"type": "argmax"}


def deploy_params(parser: ConfigParser, bundle_name: str, source: str = "configs/inference.json") -> dict:
    """
    The runner's parameters from a parsed bundle ``inference.json`` (overrides already applied): sizes, channels,
    the pre-processing (orientation, normalisation, grid, low-resolution mode), the activation and how labels
    are formed (argmax, or BraTS regions with the layout's codes from :data:`jnet.data.brats.LAYOUTS`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's notice on Orientationd's default labels
        pre = parser.get_parsed_content("preprocessing").transforms
        post = parser.get_parsed_content("postprocessing").transforms
    _check_steps(pre, PREPROCESSING, "preprocessing", source)
    _check_steps(post, POSTPROCESSING, "postprocessing", source)
    load, channels, orientation, _, normalize, _, grid, lowres = pre
    activation, invert, labels, _ = post
    if not (load._loader.ensure_channel_first and load._loader.image_only):
        raise _unsupported(source, "LoadImaged without ensure_channel_first/image_only")
    norm = normalize.normalizer
    if norm.subtrahend is not None or norm.divisor is not None:
        raise _unsupported(source, "NormalizeIntensityd with a fixed subtrahend/divisor")
    sigmoid, softmax, other = activation.sigmoid[0], activation.softmax[0], activation.other[0]  # one per key
    if other is not None or sigmoid == softmax:
        raise _unsupported(source, "an activation other than one of sigmoid/softmax")
    if any(invert.nearest_interp):
        raise _unsupported(source, "Invertd(nearest_interp=True)")
    output_size, input_size = int(parser["output_size"]), int(parser["input_size"])
    if lowres.size != input_size:
        raise _unsupported(source, f"LowResInputd(size={lowres.size}) with input_size {input_size}")
    params = {
        "format": PARAMS_FORMAT,
        "bundle": bundle_name,
        "bundle_version": parser["_meta_"].get("version", ""),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "in_channels": int(channels.num_channels),
        "num_classes": int(parser["num_classes"]),
        "input_size": input_size,
        "output_size": output_size,
        "axcodes": "".join(orientation.ornt_transform.axcodes),
        "normalize": {"channel_wise": bool(norm.channel_wise), "nonzero": bool(norm.nonzero)},
        "grid": _grid(grid, output_size, source),
        "lowres_mode": lowres.mode,
        "activation": "sigmoid" if sigmoid else "softmax",
        "labels": _labels(labels, source),
        "channel_names": list(parser["_meta_"]["network_data_format"]["inputs"]["image"]["channel_def"].values()),
        "class_names": list(parser["_meta_"]["network_data_format"]["outputs"]["pred"]["channel_def"].values()),
    }
    try:
        return check_params(params, source)
    except RunnerError as error:
        raise InputError(str(error)) from error
