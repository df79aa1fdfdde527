"""The standalone runner's ``deploy.json``, derived from a bundle's own ``inference.json`` (one source of truth).

Each pre- and post-processing step of the bundle is a :mod:`jnet.transforms.pipeline` transform wrapping the
runner's numpy function for it; its parameters are read from the instantiated transform. A pipeline with any
other step is refused with a message naming the steps, so the runner cannot silently compute something else.
"""

from __future__ import annotations

from monai.bundle import ConfigParser
from monai.transforms import Invertd, LoadImaged, SaveImaged

from jnet.errors import InputError
from jnet.processing import PARAMS_FORMAT, RunnerError, check_params
from jnet.deploy.export import INPUT_NAME, OUTPUT_NAME
from jnet.transforms import (
    Activationd,
    AsLabelsd,
    CheckChannelsd,
    InvertToLabelsd,
    LowResInputd,
    OutputGridd,
    Reorientd,
    SquarePadd,
    WarnUniformLabelsd,
    ZNormalized,
)

__all__ = ["deploy_params"]


PREPROCESSING = (LoadImaged, CheckChannelsd, Reorientd, ZNormalized, SquarePadd, OutputGridd, LowResInputd)
POSTPROCESSING = (InvertToLabelsd, WarnUniformLabelsd, SaveImaged)  # the runner warns as the bundle
# bundles generated before InvertToLabelsd (version 0.1.0 as first released): the same computation in three steps
POSTPROCESSING_THREE_STEPS = (Activationd, Invertd, AsLabelsd, WarnUniformLabelsd, SaveImaged)


def _check_steps(transforms: list, kinds: tuple, section: str, source: str) -> None:
    if len(transforms) != len(kinds) or not all(type(t) is k for t, k in zip(transforms, kinds)):
        found = ", ".join(type(t).__name__ for t in transforms)
        implemented = ", ".join(k.__name__ for k in kinds)
        raise InputError(
            f"{source}: '{section}' is [{found}]; the standalone runner implements [{implemented}] "
            "- extend jnet/processing/ and jnet/transforms/pipeline.py (and their tests) before exporting "
            "this bundle."
        )


def _unsupported(source: str, what: str) -> InputError:
    return InputError(f"{source}: {what} is not implemented by the standalone runner (jnet/processing/, jnet/deploy/runner/).")


def deploy_params(parser: ConfigParser, bundle_name: str, source: str = "configs/inference.json") -> dict:
    """
    The runner's parameters from a parsed bundle ``inference.json`` (overrides already applied): sizes, channels,
    and the parameters of each pre- and post-processing step, read from the bundle's own transforms - which call
    the runner's numpy functions (:mod:`jnet.transforms.pipeline`), so both compute the same.
    """
    pre = parser.get_parsed_content("preprocessing").transforms
    post = parser.get_parsed_content("postprocessing").transforms
    _check_steps(pre, PREPROCESSING, "preprocessing", source)
    if len(post) == len(POSTPROCESSING_THREE_STEPS) and all(type(t) is k for t, k in zip(post, POSTPROCESSING_THREE_STEPS)):
        activation_step, invert, labels_step = post[:3]
        if any(invert.nearest_interp):
            raise _unsupported(source, "Invertd(nearest_interp=True)")
    else:
        _check_steps(post, POSTPROCESSING, "postprocessing", source)
        activation_step, labels_step = post[0].activation, post[0].labels
        if type(activation_step) is not Activationd or type(labels_step) is not AsLabelsd:
            raise InputError(
                f"{source}: 'postprocessing' InvertToLabelsd uses [{type(activation_step).__name__}, {type(labels_step).__name__}]; "
                "the standalone runner implements [Activationd, AsLabelsd] - extend jnet/processing/ and "
                "jnet/transforms/pipeline.py (and their tests) before exporting this bundle."
            )
    load, channels, orientation, normalize, _, grid, lowres = pre
    if not (load._loader.ensure_channel_first and load._loader.image_only):
        raise _unsupported(source, "LoadImaged without ensure_channel_first/image_only")
    output_size = int(parser["output_size"])
    input_size = int(parser.get_parsed_content("operating_size") if "operating_size" in parser else parser["input_size"])
    if grid.size != output_size or grid.mode[0] != "linear":
        raise _unsupported(source, f"OutputGridd(size={grid.size}, mode={grid.mode[0]}) with output_size {output_size}")
    if lowres.size != input_size:
        raise _unsupported(source, f"LowResInputd(size={lowres.size}) with input_size {input_size}")
    params = {
        "format": PARAMS_FORMAT,
        "bundle": bundle_name,
        "bundle_version": parser["_meta_"].get("version", ""),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "in_channels": int(channels.num_channels),
        "sequence_suffixes": list(parser.get_parsed_content("sequence_suffixes") or []) if "sequence_suffixes" in parser else [],
        "num_classes": int(parser["num_classes"]),
        "input_size": input_size,
        "output_size": output_size,
        "axcodes": orientation.axcodes,
        "normalize": {"channel_wise": bool(normalize.channel_wise), "nonzero": bool(normalize.nonzero)},
        "grid": dict(grid.grid),
        "lowres_mode": lowres.mode,
        "activation": activation_step.activation,
        "labels": labels_step.labels,
        "channel_names": list(parser["_meta_"]["network_data_format"]["inputs"]["image"]["channel_def"].values()),
        "class_names": list(parser["_meta_"]["network_data_format"]["outputs"]["pred"]["channel_def"].values()),
    }
    try:
        return check_params(params, source)
    except RunnerError as error:
        raise InputError(str(error)) from error
