"""A bundle's ``large_files.yml`` (model-zoo format) and the checksum check of the files it lists.

Format, as ``monai.bundle download_large_files`` reads it (it verifies ``hash_val`` of an existing file with
``hash_type`` and skips the download)::

    large_files:
      - path: "models/model.pt"
        url: ""
        hash_val: "<hex digest>"
        hash_type: "sha256"

PyYAML is not a dependency of the package: :func:`read_large_files` uses it when installed and otherwise reads
this block layout (one list of flat ``key: value`` entries) itself.
"""

from __future__ import annotations

import hashlib
import os

from jnet.errors import InputError

__all__ = ["sha256_file", "file_digest", "read_large_files", "large_files_yml", "verify_large_files", "LARGE_FILES"]

LARGE_FILES = "large_files.yml"
HASH_TYPES = ("md5", "sha1", "sha256", "sha512")  # those monai.apps.utils.check_hash accepts


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


def _scalar(text: str) -> str:
    text = text.strip()
    if text[:1] in "\"'":
        return text[1 : text.index(text[0], 1)]
    return text.split(" #")[0].strip()


def _parse_block(text: str, source: str) -> dict:
    entries: list[dict] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#")[0] if raw.lstrip().startswith("#") else raw
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped == "large_files:":
            entries = []
            continue
        if entries is None or ":" not in stripped:
            raise InputError(f"{source}: line {number} is not in the large_files.yml format: {raw.strip()!r}.")
        if stripped.startswith("- "):
            entries.append({})
            stripped = stripped[2:]
        elif not entries:
            raise InputError(f"{source}: line {number} is not in the large_files.yml format: {raw.strip()!r}.")
        key, value = stripped.split(":", 1)
        entries[-1][key.strip()] = _scalar(value)
    if entries is None:
        raise InputError(f"{source}: no 'large_files:' list.")
    return {"large_files": entries}


def read_large_files(path: str) -> list[dict]:
    """The entries of a ``large_files.yml``: ``[{"path": ..., "url": ..., "hash_val": ..., "hash_type": ...}]``."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file; the bundle lists its weights and their checksums there.")
    with open(path) as f:
        text = f.read()
    try:
        import yaml
    except ImportError:
        content = _parse_block(text, path)
    else:
        try:
            content = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML ({error}).") from error
    entries = content.get("large_files") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("path") for e in entries):
        raise InputError(f"{path}: expected a 'large_files' list of entries with a 'path'.")
    return [{k: "" if v is None else str(v) for k, v in entry.items()} for entry in entries]


def large_files_yml(entries: list[dict]) -> str:
    """The ``large_files.yml`` text of ``entries`` (keys path, url, hash_val, hash_type)."""
    lines = ["large_files:"]
    for entry in entries:
        lines.append(f'  - path: "{entry["path"]}"')
        for key in ("url", "hash_val", "hash_type"):
            lines.append(f'    {key}: "{entry.get(key, "")}"')
    return "\n".join(lines) + "\n"


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
