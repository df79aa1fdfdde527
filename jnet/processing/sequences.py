"""
A case's sequences found by their file names: ``p001_t2.nii.gz`` beside ``p001_adc.nii.gz`` is one prostate case
(T2 then ADC), ``BraTS2021_00000_flair.nii.gz`` beside its ``_t1``, ``_t1ce`` and ``_t2`` files one BraTS case. The
bundles' ``sequence_suffixes`` list the suffix of each channel's file in channel order, the reference (first) one
first; a file whose name ends with the reference suffix stands for its whole case. This is how a case of several
files reaches the bundle where only one path can be given - MONAI Label sends one image per request - and how a
folder of separate sequence files is segmented case by case.

Python 3.6 syntax, the standard library only.
"""

import os

from .params import RunnerError

NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def _split_extension(path):
    """``(name without extension, extension)`` of a NIfTI file name; the extension is ``""`` for anything else (a
    DICOM series folder)."""
    for extension in NIFTI_EXTENSIONS:
        if path.endswith(extension):
            return path[: -len(extension)], extension
    return path, ""


def _existing(stem):
    """The NIfTI file ``stem + .nii.gz`` or ``stem + .nii`` that exists, else None."""
    for extension in NIFTI_EXTENSIONS:
        if os.path.isfile(stem + extension):
            return stem + extension
    return None


def _others(name, suffixes):
    """``[(suffix, the existing file or None)]`` of the other sequences of the reference file named ``name``."""
    stem = name[: len(name) - len(suffixes[0])]
    return [(suffix, _existing(stem + suffix)) for suffix in suffixes[1:]]


def _siblings(path, suffixes):
    """The other sequence files that exist beside the reference file ``path``."""
    name, _ = _split_extension(path)
    return [found for _, found in _others(name, suffixes) if found]


def sequence_files(path, suffixes):
    """
    The files of the case ``path`` stands for: ``[path, <stem><suffix>.nii[.gz] for the other suffixes]`` when its
    name is ``<stem><suffixes[0]>.nii[.gz]`` and at least one of those other files exists beside it; otherwise None
    (the file is a case of its own, as before). Raises :class:`RunnerError` naming the missing files when only some
    of them exist.
    """
    if isinstance(suffixes, str):
        raise RunnerError("sequence_suffixes must be a list of file-name suffixes, one per sequence (e.g. ['_t2', '_adc']), got '{}'.".format(suffixes))
    if not suffixes or len(suffixes) < 2 or not isinstance(path, str):
        return None
    name, extension = _split_extension(path)
    if not extension or not name.endswith(suffixes[0]):
        return None
    others = _others(name, suffixes)
    if not any(found for _, found in others):
        return None
    stem = name[: len(name) - len(suffixes[0])]
    missing = [stem + suffix + extension for suffix, found in others if not found]
    if missing:
        raise RunnerError(
            "{}: the case's other sequence file(s) {} are missing (expected beside it: one file per suffix of {}).".format(
                path, ", ".join(os.path.basename(m) for m in missing), ", ".join(suffixes)
            )
        )
    return [path] + [found for _, found in others]


def group_sequences(cases, suffixes):
    """
    The cases of a list of inputs (files, or lists of one case's files) with the sequence files of each case joined:
    a file with the reference suffix becomes the list of its case's files (:func:`sequence_files`), and a file that is
    one of another listed case's sequences is left out (it is in that case). Lists stay as they are. Returns the
    cases and the problems, ``[(file, message)]``, of the files whose case is incomplete (left out).
    """
    if isinstance(suffixes, str):
        raise RunnerError("sequence_suffixes must be a list of file-name suffixes, one per sequence (e.g. ['_t2', '_adc']), got '{}'.".format(suffixes))
    if not suffixes or len(suffixes) < 2:
        return list(cases), []
    grouped, problems, taken = [], [], set()
    for case in cases:
        try:
            grouped.append(case if not isinstance(case, str) else (sequence_files(case, suffixes) or case))
        except RunnerError as error:
            problems.append((case, str(error)))
            taken.update(os.path.normpath(f) for f in _siblings(case, suffixes))  # in the incomplete case, not cases of their own
    taken.update(os.path.normpath(f) for case in grouped if not isinstance(case, str) for f in case[1:])
    return [case for case in grouped if not (isinstance(case, str) and os.path.normpath(case) in taken)], problems
