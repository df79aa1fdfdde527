"""Model files: ONNX Runtime sessions, and which loader a model file needs."""

import os

from jnet.processing import RunnerError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class OnnxModel(object):
    """An ONNX model in ONNX Runtime (CUDA when available, else CPU). ``run``: ``(N, C, r, r)`` -> logits."""

    def __init__(self, path, params, threads=0):
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise RunnerError("{}: onnxruntime is not importable ({}); pip install onnxruntime.".format(path, error))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as error:
            raise RunnerError("{}: not a valid ONNX model ({}).".format(path, str(error).strip().splitlines()[0]))
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        check_input_shape(path, inputs.get(params["input_name"]), params)
        self.input_name, self.output_name = params["input_name"], params["output_name"]
        self.max_batch = None

    def run(self, batch):
        return self.session.run([self.output_name], {self.input_name: batch})[0]


def check_input_shape(path, shape, params):
    expected = [params["in_channels"], params["input_size"], params["input_size"]]
    if shape is None or [int(s) if str(s).isdigit() else s for s in list(shape)[1:]] != expected:
        raise RunnerError(
            "{}: model input '{}' has shape {}, deploy.json says (N, {}, {}, {}); use the deploy.json exported "
            "with this model.".format(path, params["input_name"], shape, *expected)
        )



def model_kind(path):
    """``"onnx"`` or ``"engine"`` by the file's suffix; :class:`RunnerError` naming the file for anything else."""
    if not os.path.isfile(path):
        raise RunnerError("{}: no such model file.".format(path))
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    raise RunnerError(
        "{}: not a model this runner reads - expected an ONNX model (.onnx) or a TensorRT engine ({}).".format(
            path, ", ".join(ENGINE_SUFFIXES)
        )
    )


def load_model(path, params, threads=0):
    """An :class:`OnnxModel` for ``.onnx``, a :class:`TensorRTModel` for ``.engine``/``.plan``/``.trt``."""
    if model_kind(path) == "onnx":
        return OnnxModel(path, params, threads)
    from .tensorrt_engine import TensorRTModel  # the TensorRT and CUDA code only where an engine is run

    return TensorRTModel(path, params)

