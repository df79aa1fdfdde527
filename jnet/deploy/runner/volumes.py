"""Whole volumes through the runner: one NIfTI file or a folder of them, a bad file reported and skipped."""

import glob
import os
import sys

import nibabel as nib
import numpy as np

from jnet.processing import (
    OBLIQUE_WARNING_DEGREES, RunnerError, apply_orientation, is_dicom_folder, load_case, mask_name_clash, mask_stem, normalize_volume,
    oblique_warning, obliquity_degrees, orientations, oriented_view, postprocess, preprocess, to_axis_aligned,
    uniform_mask_warning,
)


def segment_slices(model, slices, state, params, batch_size=32):
    """``(D, C, r, r)`` network inputs -> ``(H, W, D)`` labels, ``batch_size`` slices at a time (memory stays at
    one batch of 256x256 probabilities, for 2 GB devices)."""
    step = min(batch_size, model.max_batch or batch_size)
    parts = [postprocess(model.run(slices[i : i + step]), state, params) for i in range(0, len(slices), step)]
    return np.concatenate(parts, axis=2)


def segment_file(model, case, params, output_dir, batch_size=32, oblique="as_is"):
    """Segment one case - a NIfTI file, or a list of its sequence files (resampled onto the first's grid) - into
    ``output_dir/<name>_seg.nii.gz`` (the first file's name): uint8 labels, the (first) input's shape and affine;
    ``oblique="axis_aligned"``: an oblique case resampled onto the nearest axis-aligned grid first, the mask there."""
    volume, affine, notes = load_case(case, params["in_channels"])
    path = case if isinstance(case, str) else case[0]
    for note in notes:
        print("INFO: " + note, file=sys.stderr)
    warning = oblique_warning(path, affine, oblique)
    if warning:
        print("WARNING: " + warning, file=sys.stderr)
    if oblique == "axis_aligned" and obliquity_degrees(affine) > OBLIQUE_WARNING_DEGREES:
        volume, affine = to_axis_aligned(volume, affine)
    forward, undo = orientations(affine, params["axcodes"])
    ras = normalize_volume(oriented_view(volume, forward), params, in_place=True)  # a view of the one copy read
    labels = np.empty(ras.shape[1:], dtype=np.uint8)
    for start in range(0, ras.shape[3], batch_size):  # a slab of slices at a time: memory is the input + a slab
        slices, state = preprocess(ras[..., start : start + batch_size], params, normalized=True)
        labels[..., start : start + batch_size] = segment_slices(model, slices, state, params, batch_size)
    del ras, volume
    labels = apply_orientation(labels[None], undo)[0]
    warning = uniform_mask_warning(path, labels)
    if warning:
        print("WARNING: " + warning, file=sys.stderr)
    name = mask_stem(path)
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


def segment_files(model, cases, params, output_dir, batch_size=32, oblique="as_is"):
    """Segment every case (a file, or a list of sequence files); a bad one is reported (``ERROR: <file>: ...``) and
    skipped, the others are written. Returns the failures as ``[(first file, message)]``."""
    failures, written = [], {}
    for case in cases:
        path = case if isinstance(case, str) else case[0]
        try:
            if mask_stem(path) in written:
                raise RunnerError(mask_name_clash(path, written[mask_stem(path)]))
            written[mask_stem(path)] = path
            print(segment_file(model, case, params, output_dir, batch_size, oblique))
        except (RunnerError, ValueError) as error:  # ValueError: numpy on a degenerate volume (an empty axis)
            message = str(error) if isinstance(error, RunnerError) else "{}: cannot be segmented ({}).".format(path, error)
            print("ERROR: {}".format(message), file=sys.stderr)
            failures.append((path, message))
    return failures


def input_cases(inputs):
    """The cases of the command line: each input a NIfTI file, a DICOM series folder, a folder of NIfTI files (each
    one case), or one case's sequence files or series folders joined by commas (``t2.nii.gz,adc.nii.gz``: T2
    first, its grid is kept)."""
    cases = []
    for item in inputs:
        if "," in item and not os.path.exists(item):
            files = [os.path.normpath(f.strip()) for f in item.split(",") if f.strip()]
            for f in files:
                if not os.path.isfile(f) and not is_dicom_folder(f):
                    raise RunnerError("{}: no such file or DICOM series folder (in the case {}).".format(f, item))
            cases.append(files if len(files) > 1 else files[0])
        elif is_dicom_folder(item):
            cases.append(os.path.normpath(item))
        else:
            cases.extend(input_files(item))
    return cases


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
