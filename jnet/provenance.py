"""What made a bundle's weights and what measured them: records written next to them by the bundle's own runs, so
that ``jnet pack`` ships figures and a training history that belong to THESE weights (matched by sha256).

- training (:class:`jnet.handlers.BestModelSaver`): ``models/<model>_training.json`` each time a new best model is
  saved - the data (folder name, number of volumes, a hash of the datalist's file names), the epoch and metric,
  the run's epochs and command-line overrides, the package versions.
- evaluation (``evaluate.json``'s last ``run`` step): ``<output_dir>/evaluation.json`` - the weights' sha256 and the
  data the metric files of that folder were computed on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["file_digest", "sha256_file", "training_record_path", "EVALUATION_RECORD", "datalist_summary", "versions",
           "write_record", "record_evaluation", "read_record"]

EVALUATION_RECORD = "evaluation.json"


def file_digest(path: str, hash_type: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(hash_type)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    """Hex sha256 of a file."""
    return file_digest(path, "sha256")


def training_record_path(model_file: str) -> str:
    """``models/model.pt`` -> ``models/model_training.json``."""
    return os.path.splitext(model_file)[0] + "_training.json"


def _file_names(item) -> list[str]:
    values = item.values() if isinstance(item, dict) else [item]
    names = []
    for value in values:
        for entry in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(entry, str):
                names.append(os.path.basename(entry))
    return names


def datalist_summary(dataset_dir: str | None, datalist: Sequence) -> dict:
    """The data of a run without its machine's paths: the dataset folder's name, the number of items and the
    sha256 of their file names in order (two runs on the same split of the same files share it)."""
    names = [_file_names(item) for item in datalist]
    return {
        "dataset": os.path.basename(os.path.normpath(dataset_dir)) if dataset_dir else None,
        "volumes": len(names),
        "datalist_sha256": hashlib.sha256(json.dumps(names).encode()).hexdigest(),
    }


def versions() -> dict:
    import monai
    import torch

    import jnet

    return {"jnet-lowres": jnet.__version__, "monai": monai.__version__, "torch": torch.__version__}


def command_overrides(argv: Sequence[str] | None = None) -> list[str]:
    """The ``--key value`` arguments of the running ``monai.bundle run`` command (what differs from the configs),
    absolute paths shortened to their last part (a shared bundle does not carry the training machine's folders)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = argv[argv.index("run") + 1 :] if "run" in argv else argv
    return [f".../{os.path.basename(a.rstrip('/'))}" if os.path.isabs(a) else a for a in argv]  # no machine's paths


def write_record(path: str, record: dict) -> None:
    """Write a JSON record atomically (a kill leaves the old record or the new one)."""
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(partial, path)


def read_record(path: str) -> dict | None:
    """A record written by :func:`write_record`, or None when there is none (or it is unreadable)."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_evaluation(model_file: str, output_dir: str, dataset_dir: str | None, datalist: Sequence) -> str:
    """``evaluate.json``'s last step: which weights (sha256) the metric files in ``output_dir`` scored, on which
    data. Only the main process writes (its metric files hold every process's volumes)."""
    import torch.distributed as dist

    path = os.path.join(output_dir, EVALUATION_RECORD)
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return path
    os.makedirs(output_dir, exist_ok=True)
    record = {
        "model_file": os.path.basename(model_file),
        "model_sha256": sha256_file(model_file),
        **datalist_summary(dataset_dir, datalist),
        "command": command_overrides(),
        "versions": versions(),
    }
    write_record(path, record)
    return path
