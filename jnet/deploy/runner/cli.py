"""The runner's command line: ``python3 jnet_runner MODEL [INPUT] [--output_dir ...] [--benchmark]``."""

import argparse
import os
import sys

from jnet.processing import PARAMS_FILE, RunnerError, at_input_size, group_sequences, load_params, model_for_size, model_input_size

from .benchmark import benchmark
from .models import load_model, model_kind
from .volumes import input_cases, segment_files

DESCRIPTION = "J-Net standalone runner: segment NIfTI volumes with an exported bundle network, without MONAI or PyTorch."


def main(argv=None):
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("model", help="model.onnx, or a TensorRT engine (.engine/.plan/.trt) built on this device")
    parser.add_argument("input", nargs="*", help="NIfTI volumes, folders of .nii/.nii.gz volumes, or a case's sequence "
                        "files joined by commas (t2.nii.gz,adc.nii.gz: resampled onto the first file's grid); a file named "
                        "<case><first suffix> beside its other sequences (p001_t2.nii.gz, p001_adc.nii.gz: deploy.json's "
                        "sequence_suffixes) is that whole case")
    parser.add_argument("--output_dir", default="output", help="where <name>_seg.nii.gz go (default: output)")
    parser.add_argument("--params", help="deploy.json (default: next to the model)")
    parser.add_argument("--oblique", choices=("as_is", "axis_aligned"), default="as_is", help="an oblique volume: run "
                        "as is (default), or resample it onto the nearest axis-aligned grid first (the mask is written there)")
    parser.add_argument("--input_size", type=int, help="the input size to run at, for a kit exported from a resolution-"
                        "switchable (_any) bundle: one of deploy.json's input_sizes; with MODEL one of the kit's models "
                        "(model.onnx, model_16.engine, ...) the kit's file of that size and kind runs (default: the size of "
                        "the MODEL named, model_16.onnx: 16; else deploy.json's input_size)")
    parser.add_argument("--batch_size", type=int, default=32, help="slices per network call (default 32)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime CPU threads (default: all cores)")
    parser.add_argument("--benchmark", action="store_true", help="print network images/s at batch 1 and batch_size")
    parser.add_argument("--seconds", type=float, default=5.0, help="benchmark time per batch size (default 5)")
    args = parser.parse_args(argv)
    try:
        model_kind(args.model)  # the model argument first: a wrong file is named before its deploy.json is sought
        params_file = args.params or os.path.join(os.path.dirname(os.path.abspath(args.model)), PARAMS_FILE)
        kit_params = load_params(params_file)
        size = args.input_size if args.input_size is not None else model_input_size(args.model, kit_params)
        params = at_input_size(kit_params, size, params_file)  # the size asked for, or that of the model file named
        if not args.input and not args.benchmark:
            raise RunnerError("give an input volume or folder, or --benchmark.")
        model_path = model_for_size(args.model, kit_params, args.input_size)
        if model_path != args.model:
            print("input size {0}x{0}: {1}".format(params["input_size"], model_path))
        model = load_model(model_path, params, args.threads)
        if args.input:
            paths, incomplete = group_sequences(input_cases(args.input), params.get("sequence_suffixes"))
            for _, message in incomplete:
                print("ERROR: {}".format(message), file=sys.stderr)
            failures = incomplete + segment_files(model, paths, params, args.output_dir, args.batch_size, args.oblique)
            paths = paths + [path for path, _ in incomplete]
            if failures and len(paths) == 1:
                return 1  # its one ERROR line is printed
            if failures:
                raise RunnerError("{} of {} volumes failed and were skipped: {}".format(
                    len(failures), len(paths), ", ".join(os.path.basename(path) for path, _ in failures)))
        if args.benchmark:
            for batch, rate in sorted(benchmark(model, params, args.batch_size, args.seconds).items()):
                print("{}: batch {}: {:.1f} images/s (network only)".format(os.path.basename(model_path), batch, rate))
    except RunnerError as error:
        print("ERROR: {}".format(error), file=sys.stderr)
        return 1
    return 0
