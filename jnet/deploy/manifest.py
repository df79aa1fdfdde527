"""The manifest of a packed bundle: every file (configs, docs, scripts, weights) with its size and sha256.

``pack`` writes ``manifest.json`` at the bundle's top; ``unpack`` and ``python -m jnet verify`` refuse a bundle
whose files differ from it - a changed, missing or unexpected file, named. The manifest proves the files are the
ones it lists; that the manifest itself comes from whom you trust takes its signature (:mod:`.signing`) or the
zip's checksum received by another channel (docs/security.md).
"""

from __future__ import annotations

import json
import os

from jnet.errors import InputError

from .integrity import sha256_file

__all__ = ["MANIFEST", "SIGNATURE", "MANIFEST_FORMAT", "bundle_files", "write_manifest", "read_manifest", "verify_manifest"]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"  # an OpenSSH signature of manifest.json (ssh-keygen -Y sign)
MANIFEST_FORMAT = "jnet-manifest/1"
NOT_LISTED = (MANIFEST, SIGNATURE)  # the manifest cannot list itself; the signature is made after it


def bundle_files(bundle_dir: str) -> list[str]:
    """Every file below ``bundle_dir`` as a sorted ``/``-separated relative path, the manifest and its signature
    left out. A symbolic link is refused: it could point anywhere once unpacked."""
    files = []
    for folder, dirs, names in os.walk(bundle_dir):
        dirs.sort()
        for name in dirs + names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                raise InputError(f"{path}: a symbolic link in the bundle; refusing it.")
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), bundle_dir).replace(os.sep, "/")
            if relative not in NOT_LISTED:
                files.append(relative)
    return sorted(files)


def write_manifest(bundle_dir: str, name: str, version: str) -> dict:
    """Write ``bundle_dir/manifest.json`` listing every file of the bundle; returns it."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "bundle": name,
        "version": version,
        "files": [
            {"path": path, "size": os.path.getsize(os.path.join(bundle_dir, path)), "sha256": sha256_file(os.path.join(bundle_dir, path))}
            for path in bundle_files(bundle_dir)
        ],
    }
    with open(os.path.join(bundle_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


def read_manifest(bundle_dir: str, label: str | None = None) -> dict:
    """The checked ``manifest.json`` of ``bundle_dir``; ``label`` names the bundle in messages (e.g. the zip)."""
    label = label or bundle_dir
    path = os.path.join(bundle_dir, MANIFEST)
    if not os.path.isfile(path):
        raise InputError(f"{label}: no {MANIFEST}; the bundle's files cannot be verified (pack it with `python -m jnet pack`).")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except ValueError as error:
        raise InputError(f"{label}: {MANIFEST} is not valid JSON ({error}).") from error
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, list) or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str) and isinstance(e.get("size"), int)
        for e in files
    ):
        raise InputError(f"{label}: {MANIFEST} is not a {MANIFEST_FORMAT} manifest (format, files with path, size, sha256).")
    return manifest


def verify_manifest(bundle_dir: str, label: str | None = None) -> dict:
    """Refuse, naming every file at fault, a bundle whose files differ from its manifest: a file changed (size or
    sha256), missing, or not listed. Returns the manifest."""
    label = label or bundle_dir
    manifest = read_manifest(bundle_dir, label)
    listed = {entry["path"]: entry for entry in manifest["files"]}
    present = set(bundle_files(bundle_dir))
    problems = [f"{path} is missing" for path in sorted(set(listed) - present)]
    problems += [f"{path} is not in the manifest" for path in sorted(present - set(listed))]
    for path in sorted(set(listed) & present):
        full = os.path.join(bundle_dir, path)
        if os.path.getsize(full) != listed[path]["size"] or sha256_file(full) != listed[path]["sha256"].lower():
            problems.append(f"{path} was changed (its sha256 differs from {MANIFEST})")
    if problems:
        raise InputError(f"{label}: refused - {'; '.join(problems)}.")
    return manifest
