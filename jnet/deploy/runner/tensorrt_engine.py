"""A serialized TensorRT engine run through pycuda or cuda-python (Jetson: TensorRT 8.2; elsewhere 8.5+/10)."""

import numpy as np

from jnet.processing import RunnerError

from .models import check_input_shape


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
        check_input_shape(path, list(profile[-1]), params)
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
