"""Deployment: the standalone runner (numpy + nibabel + ONNX Runtime/TensorRT), its kit, and bundle distribution.

The names below load their module on first use (PEP 562), so ``jnet.deploy.standalone`` - the numpy steps that
``jnet.transforms`` wraps - imports without the export and packing code (and without an import cycle).
"""

from importlib import import_module

_EXPORTS = {
    "read_large_files": ".integrity",
    "sha256_file": ".integrity",
    "verify_large_files": ".integrity",
    "export_kit": ".kit",
    "pack_bundle": ".pack",
    "unpack_bundle": ".pack",
    "deploy_params": ".params",
    "RunnerError": ".standalone",
    "trtexec_commands": ".standalone",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
