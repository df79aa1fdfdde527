"""The deployment kit of a trained bundle: one folder to copy to a device that has no MONAI or PyTorch.

``OUT_DIR/model.onnx`` (input ``image`` ``(N, C, r, r)``, output ``pred`` ``(N, K, 256, 256)`` logits, ``N``
dynamic), ``deploy.json`` (the runner's parameters, derived from the bundle's ``inference.json``),
``jnet_runner/`` (the standalone runner: byte copies of :mod:`jnet.deploy.runner` and :mod:`jnet.processing` under
their own package path, run as ``python3 jnet_runner``) and ``build_engine.sh`` (the ``trtexec`` commands that build
and measure a TensorRT engine on the device).
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import subprocess

import numpy as np
import torch

import jnet.deploy.runner
import jnet.processing
from jnet.bundles.parse import bundle_parser
from jnet.checkpoints import apply_overrides, load_weights, parse_overrides
from jnet.errors import InputError
from jnet.processing import PARAMS_FILE, RunnerError, at_input_size, kit_files, load_params

from .export import INPUT_NAME, export_onnx
from .params import deploy_params
from .runner.models import ENGINE_SUFFIXES
from .runner.trtexec import parse_trtexec_output, trtexec_commands, workspace_flag
from .staging import staging_folder

__all__ = ["export_kit", "build_engine_script", "kit_trtexec", "RUNNER_NAME", "MAX_ABS_DIFF", "TRTEXEC_JETPACK"]

RUNNER_NAME = "jnet_runner"  # a folder: `python3 jnet_runner MODEL INPUT` on the device
OLD_RUNNER_NAME = "jnet_runner.py"  # the one-file runner of kits exported before 0.1.0's layered package
MAX_ABS_DIFF = 1e-4  # ONNX Runtime vs PyTorch logits, checked on every export
TRTEXEC_JETPACK = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs trtexec (not on PATH)
KIT_FILES = ("model.onnx", PARAMS_FILE, RUNNER_NAME, "build_engine.sh")


def onnx_name(size: int, default_size: int) -> str:
    """The kit's ONNX file of input size ``size``: ``model.onnx`` at the bundle's default size, else ``model_<size>.onnx``."""
    return "model.onnx" if size == default_size else f"model_{size}.onnx"


def _python_files(package) -> list[str]:
    folder = os.path.dirname(package.__file__)
    return sorted(name for name in os.listdir(folder) if name.endswith(".py"))


def write_runner(runner_dir: str) -> list[str]:
    """The standalone runner as a folder of its own: ``runner_dir/__main__.py`` and byte copies of
    :mod:`jnet.deploy.runner` and :mod:`jnet.processing` under their package path (``jnet/...``, with empty
    ``__init__.py`` above them), so the runner's imports are the same in the kit and in the repository.
    Returns the written paths relative to ``runner_dir``."""
    written = []
    for package in (jnet.processing, jnet.deploy.runner):
        relative = os.path.join(*package.__name__.split("."))
        os.makedirs(os.path.join(runner_dir, relative), exist_ok=True)
        for name in _python_files(package):
            shutil.copyfile(os.path.join(os.path.dirname(package.__file__), name), os.path.join(runner_dir, relative, name))
            written.append(os.path.join(relative, name))
    for parent in ("jnet", os.path.join("jnet", "deploy")):
        with open(os.path.join(runner_dir, parent, "__init__.py"), "w") as f:
            f.write('"""The standalone runner\'s part of the jnet package (the kit holds only jnet.processing and jnet.deploy.runner)."""\n')
        written.append(os.path.join(parent, "__init__.py"))
    shutil.copyfile(os.path.join(os.path.dirname(jnet.deploy.runner.__file__), "__main__.py"), os.path.join(runner_dir, "__main__.py"))
    return written + ["__main__.py"]


def kit_models(params: dict) -> list[tuple[int, str]]:
    """The kit's (input size, ONNX file) pairs: every size of a switchable bundle's kit, else its one ``model.onnx``."""
    return sorted((int(size), file) for size, file in kit_files(params).items())


def build_engine_script(params: dict, max_batch: int = 32, fp16: bool = True) -> str:
    """``build_engine.sh``: build ``model.engine`` from ``model.onnx`` with trtexec, then measure it (a switchable bundle's
    kit: every size's ``model_<r>.onnx`` -> ``model_<r>.engine`` as well, its logs ``trtexec_<r>_b<batch>.log``)."""
    lines = [
        "#!/bin/sh",
        "# Build the TensorRT engine ON the device that runs it (engines are specific to the GPU and TensorRT version),",
        "# then measure it: trtexec prints 'Throughput: X qps'; images/s = X x the batch in --shapes.",
        "set -e",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'TRTEXEC="$(command -v "$TRTEXEC" || echo "$TRTEXEC")"',
        "# the workspace option of this TensorRT: --workspace before 8.4 (JetPack 4.6: 8.2), --memPoolSize from 8.4 (10 has no other)",
        '[ -f "$TRTEXEC" ] && [ -x "$TRTEXEC" ] || { echo "ERROR: $TRTEXEC: trtexec not found - it ships with TensorRT'
        ' (JetPack on a Jetson); set TRTEXEC=/path/to/trtexec." >&2; exit 1; }',
    ]
    lines.append('if "$TRTEXEC" --help 2>&1 | grep -q memPoolSize; then WORKSPACE="%s"; else WORKSPACE="%s"; fi'
                 % (workspace_flag("10"), workspace_flag("8.2")))
    for size, onnx_file in kit_models(params):
        at_size, stem = at_input_size(params, size), os.path.splitext(onnx_file)[0]
        tag = "" if onnx_file == "model.onnx" else f"{size}_"
        if len(kit_models(params)) > 1:
            lines.append(f"# input size {size}x{size}: {onnx_file} -> {stem}.engine (the runner: --input_size {size})")
        build, *measure = trtexec_commands(onnx_file, at_size, f"{stem}.engine", max_batch, fp16, tensorrt=None)
        lines.append('"$TRTEXEC" ' + " ".join(shlex.quote(part) for part in build[1:]) + ' "$WORKSPACE"')
        lines.append("# each measurement's output is kept in trtexec_%sb<batch>.log: `python -m jnet trtexec <kit> --record <file>.json "
                     "--device ... --logs \"['trtexec_%sb1.log','trtexec_%sb%d.log']\"` on the PC turns them into a measured row"
                     % (tag, tag, tag, max_batch))
        for batch, command in zip((1, max_batch), measure):
            log = f"trtexec_{tag}b{batch}.log"
            lines.append('"$TRTEXEC" ' + " ".join(shlex.quote(part) for part in command[1:]) + f' > {log} 2>&1 || {{ cat {log}; exit 1; }}; cat {log}')
    return "\n".join(lines) + "\n"


def kit_trtexec(
    kit_dir: str, max_batch: int = 32, fp16: bool = True, run: bool = False, record: str | None = None, device: str | None = None,
    logs: list[str] | None = None, tensorrt: str = "8.2", input_size: int | None = None,
) -> list[list[str]]:
    """Print the trtexec commands for the kit in ``kit_dir`` (build ``model.engine``, measure at batch 1 and
    ``max_batch``); with ``run``, run them with the trtexec on PATH or JetPack's. ``record`` (with ``run``): write
    what the measurements printed - images/s and mean latency at batch 1 and ``max_batch`` - to that JSON file with
    ``device`` (e.g. "Jetson Nano 4GB, JetPack 4.6.1, TensorRT 8.2, nvpmodel 0"); `python -m jnet publish` shows it
    in docs/jetson.md as a measured row beside the estimate (put it in docs/results/jetson_measured/). ``logs``
    (with ``record``, instead of ``run``): the saved output of the two measurement commands, batch 1 then
    ``max_batch``, run on a device without this package (a Jetson Nano: ``sh build_engine.sh``, its output kept).
    ``tensorrt``: the version the commands are for (its workspace option: ``--workspace`` for 8.2, JetPack 4.6;
    ``--memPoolSize`` for 8.4 and later, e.g. ``10``). ``input_size``: in the kit of a switchable (``_any``) bundle,
    the size whose ONNX file the commands build and measure (default: every size's commands are printed, and
    ``run`` / ``logs`` take the default size's); returns the commands of that size."""
    params_file = os.path.join(kit_dir, PARAMS_FILE)
    if not os.path.isfile(params_file):
        raise InputError(f"{params_file}: no such file; KIT_DIR must be a folder written by `python -m jnet export`.")
    try:
        params = load_params(params_file)
    except RunnerError as error:
        raise InputError(str(error)) from error
    binary = shutil.which("trtexec") or TRTEXEC_JETPACK
    try:
        chosen = at_input_size(params, input_size, params_file)
    except RunnerError as error:
        raise InputError(str(error)) from error
    commands = None
    for size, onnx_file in kit_models(params):
        if input_size is not None and size != chosen["input_size"]:
            continue
        onnx = os.path.join(kit_dir, onnx_file)
        engine = os.path.join(kit_dir, os.path.splitext(onnx_file)[0] + ".engine")
        at_size = at_input_size(params, size)
        size_commands = trtexec_commands(onnx, at_size, engine, max_batch, fp16, trtexec=binary if run else "trtexec", tensorrt=str(tensorrt))
        if len(kit_models(params)) > 1:
            print(f"# input size {size}x{size}")
        for command in size_commands:
            print(" ".join(shlex.quote(part) for part in command))
        if size == chosen["input_size"]:
            commands, params = size_commands, at_size
    if record and not ((run or logs) and device):
        raise InputError("--record needs --device \"<device, JetPack, TensorRT, power mode>\" and --run True (or --logs of "
                         "the batch-1 and batch-N measurements): it writes what they measured.")
    if logs:
        if len(logs) != 2:
            raise InputError(f"--logs needs two files, the batch-1 and the batch-{max_batch} measurement, got {len(logs)}.")
        texts = []
        for log in logs:
            if not os.path.isfile(log):
                raise InputError(f"{log}: no such file (--logs).")
            texts.append(open(log, errors="replace").read())
        write_trtexec_record(record, params, device, fp16, {1: texts[0], max_batch: texts[1]}, commands)
        return commands
    if run:
        if not os.access(binary, os.X_OK):
            raise InputError(f"trtexec not found (neither on PATH nor {TRTEXEC_JETPACK}): it ships with TensorRT (JetPack on a Jetson).")
        outputs = []
        for command in commands:
            result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            print(result.stdout, end="")
            if result.returncode != 0:
                raise InputError(f"'{' '.join(command)}' failed (see trtexec's output above).")
            outputs.append(result.stdout)
        if record:
            write_trtexec_record(record, params, device, fp16, {1: outputs[1], max_batch: outputs[2]}, commands)
    return commands


def write_trtexec_record(path: str, params: dict, device: str, fp16: bool, outputs: dict[int, str], commands: list[list[str]]) -> dict:
    """The measured figures of one kit on one device as JSON (:func:`kit_trtexec`'s ``record``)."""
    try:
        measured = {str(batch): parse_trtexec_output(text, batch) for batch, text in outputs.items()}
    except ValueError as error:
        raise InputError(f"{path}: not written - {error}.") from error
    record = {
        "bundle": params["bundle"], "input_size": params.get("input_size"), "device": device, "precision": "fp16" if fp16 else "fp32",
        "measured": measured, "commands": [" ".join(shlex.quote(part) for part in command) for command in commands],
    }
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"{path}: {params['bundle']} on {device}: " + ", ".join(f"batch {b} {m['images_per_s']:.0f} images/s" for b, m in measured.items()))
    return record


EXPORT_PACKAGES = ("onnx", "onnxruntime")  # the export writes with the first and checks in the second


def require_export_packages() -> None:
    """Stop with one line when the ``[export]`` extra is missing: without onnx torch cannot write the model, and
    without onnxruntime the parity check (the kit's promise) cannot run."""
    import importlib.util

    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"the export needs {' and '.join(missing)} (not installed): pip install onnx onnxruntime, "
            "or install the package with its extra: pip install -e \".[export]\"."
        )


def _check_parity(network: torch.nn.Module, onnx_file: str, shape: tuple[int, ...]) -> float:
    """Max abs difference of ONNX Runtime and PyTorch logits on a seeded batch of 2."""
    import onnxruntime as ort

    data = torch.randn((2,) + shape[1:], generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {INPUT_NAME: data.numpy()})[0]
    with torch.no_grad():
        torch_out = network(data).numpy()
    difference = float(np.abs(onnx_out - torch_out).max())
    if not difference <= MAX_ABS_DIFF:
        raise RuntimeError(f"{onnx_file}: ONNX Runtime differs from PyTorch by {difference:.2e} (> {MAX_ABS_DIFF:g}).")
    return difference


def export_kit(
    bundle_dir: str,
    out_dir: str,
    model_file: str | None = None,
    opset: int = 17,
    overrides: dict | str | None = None,
    max_batch: int = 32,
    fp16: bool = True,
) -> dict:
    """
    Export the bundle's network with the weights in ``model_file`` (default ``<bundle_dir>/models/model.pt``)
    into the kit folder ``out_dir``. ``opset`` 13 for TensorRT 8.2 (JetPack 4.6), 17 otherwise; ``overrides``:
    the config values the weights were trained with (``{"features": 4}``). Returns the kit's file paths.
    """
    require_export_packages()
    bundle_dir = os.path.abspath(bundle_dir)
    source = os.path.join(bundle_dir, "configs", "inference.json")
    if not os.path.isfile(source):
        raise InputError(f"{source}: no such file; BUNDLE_DIR must be a bundle folder (configs/inference.json).")
    parser = bundle_parser(bundle_dir, base="configs/inference.json")
    apply_overrides(parser, parse_overrides(overrides), source)
    if parser["input_size"] == "auto":
        raise InputError(f"{source}: input_size auto is chosen on the device at start-up; the export writes every size "
                         "of a switchable bundle (leave input_size at its default or give one size).")
    name = os.path.basename(bundle_dir)
    params = deploy_params(parser, name, source)
    weights = model_file or os.path.join(bundle_dir, "models", "model.pt")
    network = load_weights(parser.get_parsed_content("network_def"), weights)
    sizes = list(getattr(network, "sizes", ()))  # a resolution-switchable network: one ONNX file per size
    files = {size: onnx_name(size, params["input_size"]) for size in sizes} if sizes else {params["input_size"]: "model.onnx"}
    # the kit is built in a hidden folder inside OUT_DIR and moved in only once it is complete and checked: a failed
    # export leaves an earlier kit as it was, and no half-written folder
    with staging_folder(out_dir, ".export-") as staging:
        staged = {name: os.path.join(staging, name) for name in KIT_FILES + tuple(files.values())}
        differences = {}
        for size, file in files.items():
            if sizes:
                parser["input_size"] = size  # the bundle's own pipeline at that size must be what the runner implements
                deploy_params(parser, name, source)
            fixed = network.at_size(size) if sizes else network
            shape = (1, params["in_channels"], size, size)
            export_onnx(fixed, shape, staged[file], opset)
            differences[str(size)] = _check_parity(fixed, staged[file], shape)
        params["onnx_opset"] = int(opset)
        params["onnx_max_abs_diff"] = max(differences.values())
        if sizes:
            params["input_sizes"] = {str(size): file for size, file in files.items()}
            params["onnx_max_abs_diff_per_size"] = differences
        with open(staged[PARAMS_FILE], "w") as f:
            json.dump(params, f, indent=4)
            f.write("\n")
        write_runner(staged[RUNNER_NAME])
        with open(staged["build_engine.sh"], "w") as f:
            f.write(build_engine_script(params, max_batch, fp16))
        os.chmod(staged["build_engine.sh"], 0o755)
        for old_name in (RUNNER_NAME, OLD_RUNNER_NAME):  # the previous kit's runner goes (a folder is not replaced)
            old = os.path.join(out_dir, old_name)
            if os.path.isdir(old):
                shutil.rmtree(old)
            elif os.path.isfile(old):
                os.remove(old)
        for stale in glob.glob(os.path.join(out_dir, "model_*.onnx")):  # another size set's files
            os.remove(stale)
        for file, path in staged.items():
            os.replace(path, os.path.join(out_dir, file))
        for suffix in ENGINE_SUFFIXES:  # an engine built from a previous ONNX file (any size) no longer matches it
            for stale in glob.glob(os.path.join(out_dir, "model" + suffix)) + glob.glob(os.path.join(out_dir, "model_*" + suffix)):
                os.remove(stale)
    return {file: os.path.join(out_dir, file) for file in KIT_FILES + tuple(f for f in files.values() if f not in KIT_FILES)}

