"""Whole volumes through the runner: one NIfTI file or a folder of them, a bad file reported and skipped."""

import glob
import os
import sys

import nibabel as nib
import numpy as np

from jnet.processing import RunnerError, apply_orientation, load_volume, postprocess, preprocess, reorient, uniform_mask_warning


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
    warning = uniform_mask_warning(path, labels)
    if warning:
        print("WARNING: " + warning, file=sys.stderr)
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
