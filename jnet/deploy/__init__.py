"""Deployment: the standalone runner (numpy + nibabel + ONNX Runtime/TensorRT), its kit, and bundle distribution."""

from .integrity import read_large_files, sha256_file, verify_large_files
from .kit import export_kit
from .pack import pack_bundle, unpack_bundle
from .params import deploy_params
from .standalone import RunnerError, trtexec_commands
