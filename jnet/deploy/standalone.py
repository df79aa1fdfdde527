#!/usr/bin/env python3
"""
J-Net standalone runner: segment NIfTI volumes with an exported bundle network, without MONAI or PyTorch.

Needs only numpy, nibabel and either ONNX Runtime (``model.onnx``) or TensorRT's Python API with pycuda or
cuda-python (``model.engine``, built on the device by ``trtexec``). Python 3.6 syntax throughout, for the Jetson
Nano's JetPack 4.6. ``python -m jnet export`` writes this file next to ``model.onnx`` and ``deploy.json``::

    python3 jnet_runner.py model.onnx volume.nii.gz --output_dir out      # or a folder of .nii/.nii.gz files
    python3 jnet_runner.py model.engine images/ --output_dir out
    python3 jnet_runner.py model.engine --benchmark                       # network images/s at batch 1 and N

This module is the project's one implementation of the bundles' pre- and post-processing (file reading and
writing aside): the bundles' MONAI transforms (``jnet/transforms/pipeline.py``) call its functions, the export
copies it byte for byte into the kit, and ``tests/test_standalone.py`` checks that the bundle calls each function
and that this runner's masks equal ``python -m monai.bundle run`` with ``inference.json``. Its parameters come
from ``deploy.json``, which the export reads from the bundle's transforms (refusing a pipeline with a step this
runner does not implement):

1. load (channel first), 2. reorient to ``axcodes`` (RAS), 3. z-normalise per channel, 4. pad each slice to a
centred square, 5. bring it to ``output_size`` (anti-aliased trilinear resize, or centred pad/crop),
6. downsample to ``input_size`` (area mean by default), 7. the network on every slice, 8. sigmoid or softmax,
9. undo 5 (linear resize of the probabilities, or crop/pad) and 4, 10. argmax, or nested regions -> label codes,
11. undo 2, 12. save as ``<name>_seg.nii.gz`` (uint8) with the input's shape and affine.
"""

import argparse
import glob
import json
import math
import os
import sys
import time

import nibabel as nib
import numpy as np

PARAMS_FORMAT = "jnet-deploy/1"
PARAMS_FILE = "deploy.json"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
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


# ---------------------------------------------------------------------------------------------- numpy resampling
def _gaussian_kernel(sigma, truncated=4.0):
    """MONAI's ``gaussian_1d(approx="erf")`` (not normalised): the Gaussian integrated over each pixel."""
    tail = int(max(sigma * truncated, 0.5) + 0.5)
    t = 0.70710678 / sigma
    return np.array([max(0.5 * (math.erf(t * (x + 0.5)) - math.erf(t * (x - 0.5))), 0.0) for x in range(-tail, tail + 1)])


def _smooth_axis(array, axis, sigma):
    """Gaussian smoothing along ``axis`` with zero padding (MONAI's ``GaussianSmooth``), in float32."""
    kernel = _gaussian_kernel(sigma).astype(np.float32)
    tail = len(kernel) // 2
    pad = [(0, 0)] * array.ndim
    pad[axis] = (tail, tail)
    padded = np.pad(array.astype(np.float32), pad, mode="constant")
    out = np.zeros(array.shape, dtype=np.float32)
    window = [slice(None)] * array.ndim
    for offset, weight in enumerate(kernel):
        window[axis] = slice(offset, offset + array.shape[axis])
        out += weight * padded[tuple(window)]  # a view of the padded array: no copy per tap
    return out


def _linear_axis(array, axis, size):
    """Linear interpolation along ``axis`` to ``size`` samples (PyTorch's ``align_corners=False``)."""
    length = array.shape[axis]
    if length == size:
        return array
    source = np.maximum((np.arange(size) + 0.5) * (float(length) / size) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), length - 1)
    high = np.minimum(low + 1, length - 1)
    shape = [1] * array.ndim
    shape[axis] = size
    frac = (source - low).astype(array.dtype).reshape(shape)
    return np.take(array, low, axis=axis) * (1.0 - frac) + np.take(array, high, axis=axis) * frac


def _nearest_axis(array, axis, size, exact=False):
    """Nearest-neighbour sampling along ``axis`` (PyTorch's ``nearest`` / ``nearest-exact``)."""
    length = array.shape[axis]
    scale = float(length) / size
    position = (np.arange(size) + (0.5 if exact else 0.0)) * scale
    return np.take(array, np.minimum(np.floor(position).astype(np.int64), length - 1), axis=axis)


def _area_axis(array, axis, size):
    """Mean over the covered input pixels along ``axis`` (PyTorch's ``area`` = adaptive average pooling)."""
    length = array.shape[axis]
    if length % size == 0:
        shape = array.shape[:axis] + (size, length // size) + array.shape[axis + 1 :]
        return array.reshape(shape).mean(axis=axis + 1)
    starts = [(i * length) // size for i in range(size)]
    ends = [-((-(i + 1) * length) // size) for i in range(size)]
    parts = [np.take(array, np.arange(s, e), axis=axis).mean(axis=axis, keepdims=True) for s, e in zip(starts, ends)]
    return np.concatenate(parts, axis=axis)


def resize_slices(volume, size, mode="linear", anti_aliasing=False):
    """
    Resize the in-plane axes (1, 2) of a ``(C, H, W, D)`` array to ``size x size``, slices (axis 3) unchanged -
    MONAI's ``Resize((size, size, -1))``: ``mode`` ``linear`` (trilinear), ``area``, ``nearest`` or
    ``nearest-exact``; ``anti_aliasing`` smooths each downsampled axis with sigma ``(factor - 1) / 2`` first.
    """
    out = volume.astype(np.float32)
    if out.shape[1:3] == (size, size):
        return out
    for axis in (1, 2):
        factor = float(out.shape[axis]) / size
        if anti_aliasing and factor > 1:
            out = _smooth_axis(out, axis, (factor - 1) / 2)
    for axis in (1, 2):
        if mode in ("linear", "bilinear", "trilinear"):
            out = _linear_axis(out, axis, size)
        elif mode == "area":
            out = _area_axis(out, axis, size)
        else:
            out = _nearest_axis(out, axis, size, exact=mode == "nearest-exact")
    return out.astype(np.float32)


def grid_start(length, size):
    """Where a centred window of ``size`` samples starts on an axis of ``length``: the first sample of a centre
    crop, or minus the zero padding put before the axis (MONAI's ``ResizeWithPadOrCrop``, symmetric padding)."""
    return length // 2 - size // 2 if length >= size else -((size - length) // 2)


def _pad_or_crop(volume, axis, size):
    """Pad with zeros (symmetric) or centre-crop ``axis`` to ``size`` (MONAI's ``ResizeWithPadOrCrop``)."""
    length, start = volume.shape[axis], grid_start(volume.shape[axis], size)
    if start < 0:
        pad = [(0, 0)] * volume.ndim
        pad[axis] = (-start, size - length + start)
        return np.pad(volume, pad, mode="constant")
    return np.take(volume, np.arange(start, start + size), axis=axis)


def _undo_pad_or_crop(volume, axis, length):
    """Reverse :func:`_pad_or_crop` of an axis that had ``length`` samples (cropped regions come back as zeros)."""
    size, start = volume.shape[axis], grid_start(length, volume.shape[axis])
    if start < 0:
        return np.take(volume, np.arange(-start, -start + length), axis=axis)
    pad = [(0, 0)] * volume.ndim
    pad[axis] = (start, length - size - start)
    return np.pad(volume, pad, mode="constant")


# ------------------------------------------------------------------------------------------ pre- and post-process
# Each step below is also one transform of the bundles (jnet/transforms/pipeline.py wraps these functions), so the
# bundle and this runner compute their pre- and post-processing with the same code.
def load_volume(path, in_channels):
    """``(C, H, W, D)`` float32 image and the affine of a 3D (one channel) or 4D (channels last) NIfTI file."""
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for unreadable files
        raise RunnerError("{}: cannot be read as NIfTI ({}).".format(path, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__))
    if data.ndim == 3:
        data = data[None]
    elif data.ndim == 4:
        data = np.moveaxis(data, -1, 0)
    else:
        raise RunnerError("{}: a {}D image; expected a 3D volume or a 4D volume with channels last.".format(path, data.ndim))
    if data.shape[0] != in_channels:
        raise RunnerError("{}: image has {} channel(s), the model expects {}.".format(path, data.shape[0], in_channels))
    data = data.astype(np.float32)
    if not np.isfinite(data).all():
        raise RunnerError("{}: holds NaN or Inf voxel values; fix or re-export the file.".format(path))
    return data, np.asarray(image.affine, dtype=np.float64)


def orientations(affine, axcodes="RAS"):
    """The nibabel orientations that take an image with ``affine`` to ``axcodes`` and back: ``(forward, undo)``."""
    source = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    target = nib.orientations.axcodes2ornt(tuple(axcodes))
    return nib.orientations.ornt_transform(source, target), nib.orientations.ornt_transform(target, source)


def apply_orientation(volume, ornt):
    """Permute and flip the spatial axes of a channel-first ``(C, H, W, D)`` array by a nibabel orientation."""
    channels_last = nib.orientations.apply_orientation(np.moveaxis(volume, 0, -1), ornt)
    return np.ascontiguousarray(np.moveaxis(channels_last, -1, 0))


def reorient(volume, affine, axcodes="RAS"):
    """Reorient the spatial axes of ``(C, H, W, D)`` to ``axcodes``; returns the array and the orientation that
    undoes it (for :func:`apply_orientation`)."""
    forward, undo = orientations(affine, axcodes)
    return apply_orientation(volume, forward), undo


def normalize(volume, channel_wise=True, nonzero=False):
    """z-normalisation (MONAI's ``NormalizeIntensity``: population std, a zero std left as 1)."""
    out = volume.astype(np.float32)
    groups = [out[c : c + 1] for c in range(out.shape[0])] if channel_wise else [out]
    for group in groups:  # views into out
        if nonzero:
            mask = group != 0
            if mask.any():
                values = group[mask]
                group[mask] = (values - values.mean(dtype=np.float64)) / (values.std(dtype=np.float64) or 1.0)
            continue
        mean, std = group.mean(dtype=np.float64), group.std(dtype=np.float64) or 1.0
        group -= np.float32(mean)
        group /= np.float32(std)
    return out


def pad_square(volume):
    """Pad the in-plane axes (1, 2) of ``(C, H, W[, D])`` with zeros to a centred square; returns it and the pads
    ``[(top, bottom), (left, right)]``."""
    side = max(volume.shape[1:3])
    pads = [((side - n) // 2, side - n - (side - n) // 2) for n in volume.shape[1:3]]
    return np.pad(volume, [(0, 0)] + pads + [(0, 0)] * (volume.ndim - 3), mode="constant"), pads


def crop_square(volume, pads):
    """Undo :func:`pad_square` with its ``pads``."""
    (top, bottom), (left, right) = pads
    return volume[:, top : volume.shape[1] - bottom, left : volume.shape[2] - right]


def to_grid(volume, size, grid, mode="linear"):
    """
    Square ``(C, s, s[, D])`` slices onto the ``size x size`` output grid: ``grid`` ``{"type": "resize",
    "anti_aliasing": bool}`` (``mode`` ``linear`` for images, anti-aliased when asked; ``nearest`` for labels) or
    ``{"type": "pad_or_crop"}`` (centred zero padding or cropping).
    """
    if grid["type"] == "resize":
        return resize_slices(volume, size, mode, grid.get("anti_aliasing", False) and mode == "linear")
    return _pad_or_crop(_pad_or_crop(volume, 1, size), 2, size)


def from_grid(volume, side, grid, mode="linear"):
    """Undo :func:`to_grid` for ``(K, size, size[, D])`` probabilities: resize to ``side`` (``mode`` linear, or
    nearest for label codes), or crop/pad."""
    if grid["type"] == "resize":
        return resize_slices(volume, side, mode)
    return _undo_pad_or_crop(_undo_pad_or_crop(volume, 1, side), 2, side)


def preprocess(volume, params):
    """
    ``(C, H, W, D)`` image in RAS -> ``(D, C, r, r)`` network input and the state :func:`postprocess` needs.
    Steps 3-6 of the module docstring.
    """
    norm = params["normalize"]
    image = normalize(volume, norm.get("channel_wise", True), norm.get("nonzero", False))
    image, pads = pad_square(image)
    side = image.shape[1]
    image = to_grid(image, params["output_size"], params["grid"])
    low = resize_slices(image, params["input_size"], params["lowres_mode"])
    return np.ascontiguousarray(np.transpose(low, (3, 0, 1, 2))), {"pads": pads, "side": side}


def activate(logits, activation):
    """Per-class probabilities of ``(K, ...)`` logits."""
    logits = logits.astype(np.float32)
    if activation == "sigmoid":
        return 0.5 + 0.5 * np.tanh(0.5 * logits)  # the logistic function, without overflow for large |logits|
    shifted = np.exp(logits - logits.max(axis=0, keepdims=True))
    return shifted / shifted.sum(axis=0, keepdims=True)


def to_labels(probabilities, labels):
    """``(K, ...)`` probabilities -> ``(...)`` uint8 labels: argmax, or nested regions (for BraTS: TC, WT, ET
    thresholded, written as the layout's codes with ET over TC over WT)."""
    if labels["type"] == "argmax":
        return probabilities.argmax(axis=0).astype(np.uint8)
    codes, threshold = labels["codes"], labels.get("threshold", 0.5)
    core, whole, enhancing = probabilities > threshold
    out = np.zeros(core.shape, dtype=np.uint8)
    out[whole] = codes["edema"]
    out[core] = codes["core"]
    out[enhancing] = codes["enhancing"]
    return out


def postprocess(logits, state, params):
    """
    ``(d, K, out, out)`` network logits of ``d`` slices -> ``(H, W, d)`` uint8 labels on the RAS grid of the input
    (steps 8-10; :func:`apply_orientation` does 11). Slices are independent: any batch of them at a time.
    """
    probabilities = activate(np.transpose(logits, (1, 2, 3, 0)), params["activation"])
    probabilities = crop_square(from_grid(probabilities, state["side"], params["grid"]), state["pads"])
    return to_labels(probabilities, params["labels"])


# ---------------------------------------------------------------------------------------------------- the models
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
        _check_input_shape(path, inputs.get(params["input_name"]), params)
        self.input_name, self.output_name = params["input_name"], params["output_name"]
        self.max_batch = None

    def run(self, batch):
        return self.session.run([self.output_name], {self.input_name: batch})[0]


def _check_input_shape(path, shape, params):
    expected = [params["in_channels"], params["input_size"], params["input_size"]]
    if shape is None or [int(s) if str(s).isdigit() else s for s in list(shape)[1:]] != expected:
        raise RunnerError(
            "{}: model input '{}' has shape {}, deploy.json says (N, {}, {}, {}); use the deploy.json exported "
            "with this model.".format(path, params["input_name"], shape, *expected)
        )


class _CudaMemory(object):
    """Device buffers and a stream through pycuda, or cuda-python when pycuda is missing."""

    def __init__(self, path):
        try:
            import pycuda.driver as cuda
        except ImportError:
            cuda = None
        if cuda is not None:
            try:
                import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
            except Exception as error:  # pycuda raises its own types when there is no usable GPU
                raise RunnerError("{}: CUDA is not usable here ({}).".format(path, error))
            self.cuda, self.cudart = cuda, None
            self.stream = cuda.Stream()
            self.handle = self.stream.handle
            return
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart
        except ImportError:
            raise RunnerError("{}: neither pycuda nor cuda-python is importable; pip3 install pycuda.".format(path))
        self.cuda, self.cudart = None, cudart
        self.stream = self._check(cudart.cudaStreamCreate())
        self.handle = int(self.stream)

    def _check(self, result):
        error, rest = result[0], result[1:]
        if int(error) != 0:
            raise RunnerError("CUDA error {}.".format(error))
        return rest[0] if rest else None

    def alloc(self, nbytes):
        if self.cuda is not None:
            return self.cuda.mem_alloc(nbytes)
        return self._check(self.cudart.cudaMalloc(nbytes))

    def to_device(self, device, array):
        if self.cuda is not None:
            self.cuda.memcpy_htod(device, array)
        else:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self.cudart.cudaMemcpy(device, array.ctypes.data, array.nbytes, kind))

    def to_host(self, array, device):
        if self.cuda is not None:
            self.cuda.memcpy_dtoh(array, device)
        else:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self.cudart.cudaMemcpy(array.ctypes.data, device, array.nbytes, kind))

    def synchronize(self):
        if self.cuda is not None:
            self.stream.synchronize()
        else:
            self._check(self.cudart.cudaStreamSynchronize(self.stream))


class TensorRTModel(object):
    """
    A serialized TensorRT engine (built on this device, e.g. by ``trtexec``; engines do not move between devices
    or TensorRT versions). Works with TensorRT 8.2 (JetPack 4.6, binding API) and 8.5+/10 (tensor API).
    ``run``: ``(N, C, r, r)`` float32 -> ``(N, K, out, out)`` float32 logits, ``N`` up to the engine's profile.
    """

    def __init__(self, path, params):
        try:
            import tensorrt as trt
        except ImportError as error:
            raise RunnerError(
                "{}: skipped - the tensorrt Python package is not importable ({}); on a Jetson it comes with "
                "JetPack (python3-libnvinfer), elsewhere run the ONNX model with onnxruntime.".format(path, error)
            )
        self.memory = _CudaMemory(path)
        with open(path, "rb") as f:
            engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(f.read())
        if engine is None:
            raise RunnerError(
                "{}: TensorRT cannot deserialize it (not an engine, or built by another TensorRT version or on "
                "another device); build it on this device with trtexec.".format(path)
            )
        self.engine, self.context = engine, engine.create_execution_context()
        self.input_name, self.output_name = params["input_name"], params["output_name"]
        self.tensor_api = hasattr(engine, "num_io_tensors")
        if self.tensor_api:
            profile = engine.get_tensor_profile_shape(self.input_name, 0)
        else:
            profile = engine.get_profile_shape(0, self.input_name)
        _check_input_shape(path, list(profile[-1]), params)
        self.max_batch = int(profile[-1][0])
        self.buffers = {}

    def _buffers(self, batch):
        if batch.shape not in self.buffers:
            if self.tensor_api:
                self.context.set_input_shape(self.input_name, batch.shape)
                out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            else:
                self.context.set_binding_shape(self.engine.get_binding_index(self.input_name), batch.shape)
                out_shape = tuple(self.context.get_binding_shape(self.engine.get_binding_index(self.output_name)))
            output = np.empty(out_shape, dtype=np.float32)
            self.buffers[batch.shape] = (self.memory.alloc(batch.nbytes), self.memory.alloc(output.nbytes), output)
        return self.buffers[batch.shape]

    def run(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        device_in, device_out, output = self._buffers(batch)
        self.memory.to_device(device_in, batch)
        if self.tensor_api:
            self.context.set_input_shape(self.input_name, batch.shape)
            self.context.set_tensor_address(self.input_name, int(device_in))
            self.context.set_tensor_address(self.output_name, int(device_out))
            self.context.execute_async_v3(self.memory.handle)
        else:
            self.context.set_binding_shape(self.engine.get_binding_index(self.input_name), batch.shape)
            bindings = [0] * self.engine.num_bindings
            bindings[self.engine.get_binding_index(self.input_name)] = int(device_in)
            bindings[self.engine.get_binding_index(self.output_name)] = int(device_out)
            self.context.execute_async_v2(bindings, self.memory.handle)
        self.memory.synchronize()
        self.memory.to_host(output, device_out)
        return output.copy()


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
    return TensorRTModel(path, params)


def trtexec_commands(onnx_file, params, engine_file="model.engine", max_batch=32, fp16=True, trtexec="trtexec"):
    """
    The ``trtexec`` command lines that build a TensorRT engine from the exported ONNX model on the device it will
    run on (batch 1 to ``max_batch``, fp16 by default) and measure it at batch 1 and ``max_batch`` (trtexec
    reports ``Throughput: X qps``; images/s = X x batch).
    """
    shape = "x{}x{}x{}".format(params["in_channels"], params["input_size"], params["input_size"])
    name = params["input_name"]
    build = [
        trtexec, "--onnx=" + onnx_file, "--saveEngine=" + engine_file, "--minShapes={}:1{}".format(name, shape),
        "--optShapes={}:{}{}".format(name, max_batch, shape), "--maxShapes={}:{}{}".format(name, max_batch, shape),
    ] + (["--fp16"] if fp16 else [])  # fmt: skip
    measure = [[trtexec, "--loadEngine=" + engine_file, "--shapes={}:{}{}".format(name, b, shape)] for b in (1, max_batch)]
    return [build] + measure


# ---------------------------------------------------------------------------------------------- whole volumes
def segment_slices(model, slices, state, params, batch_size=32):
    """``(D, C, r, r)`` network inputs -> ``(H, W, D)`` labels, ``batch_size`` slices at a time (memory stays at
    one batch of 256x256 probabilities, for 2 GB devices)."""
    step = min(batch_size, model.max_batch or batch_size)
    parts = [postprocess(model.run(slices[i : i + step]), state, params) for i in range(0, len(slices), step)]
    return np.concatenate(parts, axis=2)


def segment_file(model, path, params, output_dir, batch_size=32):
    """Segment one NIfTI file into ``output_dir/<name>_seg.nii.gz``: uint8 labels, the input's shape and affine."""
    volume, affine = load_volume(path, params["in_channels"])
    ras, undo = reorient(volume, affine, params["axcodes"])
    slices, state = preprocess(ras, params)
    labels = apply_orientation(segment_slices(model, slices, state, params, batch_size)[None], undo)[0]
    name = os.path.basename(path)
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not os.path.isdir(output_dir):
        os.makedirs(output_dir)
    out_path = os.path.join(output_dir, name + "_seg.nii.gz")
    partial = os.path.join(output_dir, "." + name + "_seg.partial.nii.gz")  # a kill never leaves a torn mask
    try:
        nib.save(nib.Nifti1Image(labels, affine), partial)
        os.replace(partial, out_path)
    except OSError as error:
        raise RunnerError("{}: cannot write {} ({}).".format(path, out_path, error))
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return out_path


def segment_files(model, paths, params, output_dir, batch_size=32):
    """Segment every file; a bad one is reported (``ERROR: <file>: ...``) and skipped, the others are written.
    Returns the failures as ``[(path, message)]``."""
    failures = []
    for path in paths:
        try:
            print(segment_file(model, path, params, output_dir, batch_size))
        except (RunnerError, ValueError) as error:  # ValueError: numpy on a degenerate volume (an empty axis)
            message = str(error) if isinstance(error, RunnerError) else "{}: cannot be segmented ({}).".format(path, error)
            print("ERROR: {}".format(message), file=sys.stderr)
            failures.append((path, message))
    return failures


def input_files(path):
    """One NIfTI file, or every ``*.nii``/``*.nii.gz`` file of a folder (sorted)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.nii")) + glob.glob(os.path.join(path, "*.nii.gz")))
        if not files:
            raise RunnerError("{}: no .nii or .nii.gz files in this folder.".format(path))
        return files
    if not os.path.isfile(path):
        raise RunnerError("{}: no such file or folder.".format(path))
    return [path]


def benchmark(model, params, batch_size=32, seconds=5.0):
    """Network-only throughput on random inputs: ``{batch: images/s}`` for batch 1 and ``batch_size``."""
    results = {}
    for batch in sorted({1, min(batch_size, model.max_batch or batch_size)}):
        shape = (batch, params["in_channels"], params["input_size"], params["input_size"])
        data = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
        for _ in range(3):
            model.run(data)  # warm-up (lazy allocation, kernel selection)
        runs, start = 0, time.time()
        while runs < 3 or time.time() - start < seconds:
            model.run(data)
            runs += 1
        results[batch] = batch * runs / (time.time() - start)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model.onnx, or a TensorRT engine (.engine/.plan/.trt) built on this device")
    parser.add_argument("input", nargs="?", help="a NIfTI volume, or a folder of .nii/.nii.gz volumes")
    parser.add_argument("--output_dir", default="output", help="where <name>_seg.nii.gz go (default: output)")
    parser.add_argument("--params", help="deploy.json (default: next to the model)")
    parser.add_argument("--batch_size", type=int, default=32, help="slices per network call (default 32)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime CPU threads (default: all cores)")
    parser.add_argument("--benchmark", action="store_true", help="print network images/s at batch 1 and batch_size")
    parser.add_argument("--seconds", type=float, default=5.0, help="benchmark time per batch size (default 5)")
    args = parser.parse_args(argv)
    try:
        model_kind(args.model)  # the model argument first: a wrong file is named before its deploy.json is sought
        params = load_params(args.params or os.path.join(os.path.dirname(os.path.abspath(args.model)), PARAMS_FILE))
        if args.input is None and not args.benchmark:
            raise RunnerError("give an input volume or folder, or --benchmark.")
        model = load_model(args.model, params, args.threads)
        if args.input is not None:
            paths = input_files(args.input)
            failures = segment_files(model, paths, params, args.output_dir, args.batch_size)
            if failures and len(paths) == 1:
                return 1  # its one ERROR line is printed
            if failures:
                raise RunnerError("{} of {} volumes failed and were skipped: {}".format(
                    len(failures), len(paths), ", ".join(os.path.basename(path) for path, _ in failures)))
        if args.benchmark:
            for batch, rate in sorted(benchmark(model, params, args.batch_size, args.seconds).items()):
                print("{}: batch {}: {:.1f} images/s (network only)".format(os.path.basename(args.model), batch, rate))
    except RunnerError as error:
        print("ERROR: {}".format(error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
