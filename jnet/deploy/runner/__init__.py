"""
J-Net standalone runner: segment NIfTI volumes with an exported bundle network, without MONAI or PyTorch.

Needs only numpy, nibabel and either ONNX Runtime (``model.onnx``) or TensorRT's Python API with pycuda or
cuda-python (``model.engine``, built on the device by ``trtexec``). Python 3.6 syntax throughout, for the Jetson
Nano's JetPack 4.6. ``python -m jnet export`` copies this package and :mod:`jnet.processing` into the kit's
``jnet_runner/`` folder, next to ``model.onnx`` and ``deploy.json``::

    python3 jnet_runner model.onnx volume.nii.gz --output_dir out      # or a folder of .nii/.nii.gz files
    python3 jnet_runner model.engine images/ --output_dir out
    python3 jnet_runner model.engine --benchmark                       # network images/s at batch 1 and N

The pre- and post-processing are :mod:`jnet.processing`'s functions - the same the bundles' MONAI transforms call;
``tests/test_standalone.py`` checks that this runner's masks equal ``python -m monai.bundle run`` with
``inference.json``. The parameters come from ``deploy.json``, which the export reads from the bundle's transforms
(refusing a pipeline with a step the runner does not implement).

Modules: :mod:`.models` (ONNX Runtime), :mod:`.tensorrt_engine` (TensorRT + CUDA buffers), :mod:`.trtexec`
(the engine-building command lines), :mod:`.volumes` (whole files and folders), :mod:`.benchmark`, :mod:`.cli`.
"""
