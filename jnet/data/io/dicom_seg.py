"""The mask of a DICOM series as a DICOM Segmentation (SEG) object that references the source series, so it opens in
a PACS viewer on top of the images (``highdicom``, the ``[dicom]`` extra; imported only when a SEG is written)."""

from __future__ import annotations

import logging
import os

import numpy as np

from jnet.errors import InputError
from jnet.processing import RunnerError, dicom_series_datasets, mask_stem

__all__ = ["write_dicom_seg", "SOFTWARE"]

logger = logging.getLogger(__name__)
SOFTWARE = "jnet-lowres"


def _highdicom(path: str):
    try:
        import highdicom
    except ImportError as e:
        raise InputError(f"{path}: writing DICOM SEG needs highdicom (pip install 'jnet-lowres[dicom]', or pip install highdicom).") from e
    return highdicom


def write_dicom_seg(mask: np.ndarray, series_folder: str, label_names: dict, output_dir: str, algorithm: str) -> str | None:
    """
    Write ``mask`` (``(H, W, D)`` label codes on the series' grid: array axis 0 the DICOM column index, axis 1 the
    row index, axis 2 the slices sorted along their normal, as :func:`jnet.processing.read_dicom_series` reads them)
    as ``<output_dir>/<series>_seg.dcm``: one segment per label code in ``label_names`` present in the mask (its name
    the segment label; category and type SNOMED CT "Tissue"), frames referencing the source instances, segmentation
    type BINARY. Returns the file written, or None when no labelled voxel is present (a SEG needs a segment).

    Args:
        mask: the label codes.
        series_folder: the DICOM series the mask was made from.
        label_names: ``{code: name}`` of the foreground codes (e.g. ``{1: "peripheral zone", 2: "transition zone"}``).
        output_dir: where the SEG goes.
        algorithm: the algorithm's name (the bundle), recorded in the SEG.
    """
    hd = _highdicom(series_folder)
    from pydicom.sr.codedict import codes

    try:
        datasets = dicom_series_datasets(series_folder)
    except RunnerError as e:
        raise InputError(str(e)) from e
    if mask.shape != (int(datasets[0].Columns), int(datasets[0].Rows), len(datasets)):
        raise InputError(f"{series_folder}: the mask's shape {mask.shape} is not the series' grid; no DICOM SEG written.")
    missing = [name for name in ("FrameOfReferenceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if name not in datasets[0]]
    if missing:
        raise InputError(f"{series_folder}: the series has no {', '.join(missing)}, which a DICOM SEG must reference; no DICOM SEG written.")
    label_names = {int(code): str(name) for code, name in label_names.items()}
    present = [code for code in sorted(label_names) if (mask == code).any()]
    if not present:
        logger.warning(f"{series_folder}: the mask has no labelled voxel; no DICOM SEG written.")
        return None
    algorithm_code = hd.AlgorithmIdentificationSequence(name=algorithm, family=codes.cid7162.ArtificialIntelligence, version=SOFTWARE)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label_names[code],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_code,
        )
        for number, code in enumerate(present, start=1)
    ]
    frames = np.zeros((len(datasets), mask.shape[1], mask.shape[0]), dtype=np.uint8)  # (slices, rows, columns)
    for number, code in enumerate(present, start=1):
        frames[np.transpose(mask == code, (2, 1, 0))] = number
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=SOFTWARE,
        manufacturer_model_name=algorithm,
        software_versions=SOFTWARE,
        device_serial_number="0",
    )
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{mask_stem(series_folder)}_seg.dcm")
    partial = os.path.join(output_dir, f".{mask_stem(series_folder)}_seg.partial.dcm")
    seg.save_as(partial)
    os.replace(partial, path)
    logger.info(f"{path}: DICOM SEG of {series_folder} ({len(present)} segment(s))")
    return path
