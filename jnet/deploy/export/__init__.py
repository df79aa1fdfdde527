from .onnx import INPUT_NAME, OUTPUT_NAME, export_onnx
from .torchscript import export_torchscript
