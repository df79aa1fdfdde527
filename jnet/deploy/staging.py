"""A hidden staging folder inside the output folder: results are built there and moved in only when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["staging_folder"]


@contextmanager
def staging_folder(out_dir: str, prefix: str) -> Iterator[str]:
    """
    Yield a new hidden folder inside ``out_dir`` (created if missing; the same file system, so ``os.replace`` /
    ``os.rename`` move results in atomically). The staging folder is always removed; on an error ``out_dir`` is
    removed too if this call created it, so a failed command leaves the user's folders as they were.

    Args:
        out_dir: the folder the results go to.
        prefix: the staging folder's name prefix, e.g. ``".export-"``.
    """
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=prefix, dir=out_dir)
    try:
        yield staging
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
