"""
The runner's parameters (``deploy.json``): the schema the export writes and :func:`check_params` accepts.

Python 3.6 syntax and the standard library only (this floor runs on the Jetson Nano's JetPack 4.6).
"""

import json
import os

PARAMS_FORMAT = "jnet-deploy/1"
PARAMS_FILE = "deploy.json"
GRID_TYPES = ("resize", "pad_or_crop")
LOWRES_MODES = ("area", "nearest", "nearest-exact", "bilinear")
ACTIVATIONS = ("softmax", "sigmoid")
LABEL_TYPES = ("argmax", "regions")
REQUIRED_PARAMS = (
    "format", "input_name", "output_name", "in_channels", "num_classes", "input_size", "output_size", "axcodes",
    "normalize", "grid", "lowres_mode", "activation", "labels",
)  # fmt: skip


class RunnerError(Exception):
    """A problem with the runner's input (a file, the model, the parameters): the message names it."""


# ---------------------------------------------------------------------------------------------------- parameters
def check_params(params, source="deploy.json"):
    """Raise :class:`RunnerError` unless ``params`` is a deploy.json dict this runner implements."""
    missing = [k for k in REQUIRED_PARAMS if k not in params]
    if missing:
        raise RunnerError("{}: missing key(s) {}; re-export with `python -m jnet export`.".format(source, ", ".join(missing)))
    if params["format"] != PARAMS_FORMAT:
        raise RunnerError("{}: format '{}', this runner reads '{}'.".format(source, params["format"], PARAMS_FORMAT))
    choices = (
        ("grid type", params["grid"].get("type"), GRID_TYPES),
        ("lowres_mode", params["lowres_mode"], LOWRES_MODES),
        ("activation", params["activation"], ACTIVATIONS),
        ("labels type", params["labels"].get("type"), LABEL_TYPES),
    )
    for name, value, allowed in choices:
        if value not in allowed:
            raise RunnerError("{}: {} '{}' is not one of {}.".format(source, name, value, ", ".join(allowed)))
    return params


def load_params(path):
    """Read and check a deploy.json."""
    if not os.path.isfile(path):
        raise RunnerError(
            "{}: no such parameter file (`python -m jnet export` writes deploy.json next to model.onnx; "
            "pass --params).".format(path)
        )
    try:
        with open(path) as f:
            params = json.load(f)
    except ValueError as error:
        raise RunnerError("{}: not a JSON file ({}).".format(path, error))
    return check_params(params, path)



def kit_files(params):
    """``{input size (str): ONNX file}`` of a kit: every size of a switchable bundle's kit, else its one ``model.onnx``."""
    return params.get("input_sizes") or {str(params["input_size"]): "model.onnx"}


def at_input_size(params, size, source="deploy.json"):
    """``params`` at input size ``size`` (a kit of a resolution-switchable bundle lists its sizes and their ONNX files in
    ``input_sizes``); :class:`RunnerError` naming the sizes the kit serves for any other. ``None``: unchanged."""
    if size is None:
        return params
    size = int(size)
    files = kit_files(params)
    if str(size) not in files:
        raise RunnerError("{}: this kit serves input size(s) {}, not {} ({}).".format(
            source, ", ".join(sorted(files, key=int)), size,
            "exported from a per-size bundle" if "input_sizes" not in params else "the sizes of its bundle"))
    chosen = dict(params)
    chosen["input_size"] = size
    return chosen


def _kit_stems(params):
    """``{file stem: input size}`` of a switchable kit's models (``model``: the default size, ``model_16``, ...)."""
    return {os.path.splitext(f)[0]: int(size) for size, f in (params.get("input_sizes") or {}).items()}


def model_input_size(model_path, params):
    """The input size of one of the kit's model files by its name (``model_16.onnx`` or ``model_16.engine``: 16), or
    None for a name the kit does not list."""
    return _kit_stems(params).get(os.path.splitext(os.path.basename(model_path))[0])


def model_for_size(model_path, params, size=None):
    """The model file to run at ``size`` (the runner's ``--input_size``): when ``model_path`` is one of the kit's models
    for another size (``model.onnx``, ``model_16.engine``), the kit's file of ``size`` with the same suffix
    (``model.onnx`` -> ``model_16.onnx``, ``model.engine`` -> ``model_16.engine``); else ``model_path`` as given."""
    stems = _kit_stems(params)
    stem, suffix = os.path.splitext(os.path.basename(model_path))
    if size is None or stem not in stems:
        return model_path
    target = [s for s, r in stems.items() if r == int(size)]
    return os.path.join(os.path.dirname(model_path), target[0] + suffix) if target else model_path
