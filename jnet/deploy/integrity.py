"""Checksums of a bundle's files and the check of those listed in its ``large_files.yml`` (format:
:mod:`jnet.bundles.large_files`)."""

from __future__ import annotations

import os

from jnet.bundles.large_files import LARGE_FILES, large_files_yml, read_large_files
from jnet.errors import InputError
from jnet.provenance import file_digest, sha256_file

__all__ = ["sha256_file", "file_digest", "read_large_files", "large_files_yml", "verify_large_files", "LARGE_FILES"]

HASH_TYPES = ("md5", "sha1", "sha256", "sha512")  # those monai.apps.utils.check_hash accepts


def verify_large_files(bundle_dir: str, large_files: str = LARGE_FILES, require_hash: bool = True) -> list[str]:
    """
    Check every file listed in ``<bundle_dir>/<large_files>`` against its ``hash_val``/``hash_type``. Raises
    :class:`~jnet.errors.InputError` naming the file for: a missing file, a path outside the bundle, an unknown
    hash type, a digest mismatch, or (``require_hash``) an entry without a hash. Returns the verified paths.
    """
    root = os.path.realpath(bundle_dir)
    listing = os.path.join(bundle_dir, large_files)
    verified = []
    for entry in read_large_files(listing):
        path = os.path.realpath(os.path.join(root, entry["path"]))
        if os.path.commonpath([root, path]) != root:
            raise InputError(f"{listing}: '{entry['path']}' points outside the bundle.")
        expected, hash_type = entry.get("hash_val", "").lower(), (entry.get("hash_type") or "sha256").lower()
        if not expected:
            if require_hash:
                raise InputError(f"{listing}: '{entry['path']}' has no hash_val; the file cannot be verified.")
            continue
        if hash_type not in HASH_TYPES:
            raise InputError(f"{listing}: '{entry['path']}' has hash_type '{hash_type}'; use one of {', '.join(HASH_TYPES)}.")
        if not os.path.isfile(path):
            raise InputError(f"{path}: listed in {large_files} but missing.")
        actual = file_digest(path, hash_type)
        if actual != expected:
            raise InputError(
                f"{path}: {hash_type} {actual} does not match {large_files} ({expected}); the file is corrupt or "
                "has been modified - refusing it."
            )
        verified.append(path)
    return verified
