"""A bundle's ``large_files.yml`` (model-zoo format): written by the generator and ``pack``, read by ``unpack``.

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

import os

from jnet.errors import InputError

__all__ = ["LARGE_FILES", "read_large_files", "large_files_yml"]

LARGE_FILES = "large_files.yml"
ENTRY_KEYS = ("url", "hash_val", "hash_type")  # after "path"


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


def large_files_yml(entries: list[dict], comments: dict[str, str] | None = None) -> str:
    """The ``large_files.yml`` text of ``entries`` (keys path, url, hash_val, hash_type); ``comments``: a
    comment after a key's value, e.g. ``{"url": "filled when the weights are published"}``."""
    comments = comments or {}
    lines = ["large_files:"]
    for entry in entries:
        lines.append(f'  - path: "{entry["path"]}"')
        for key in ENTRY_KEYS:
            comment = f"  # {comments[key]}" if key in comments else ""
            lines.append(f'    {key}: "{entry.get(key, "")}"{comment}')
    return "\n".join(lines) + "\n"
