"""Distribution of trained bundles as model-zoo zips, and their checked unpacking.

``pack``: ``<name>_v<version>.zip`` holding one top-level ``<name>/`` with ``configs/``, ``docs/``, ``LICENSE``,
``models/model.pt``, ``models/model.ts`` and ``large_files.yml`` (both weights files with their sha256). The
config values the weights were trained with (``overrides``) are written into the packed configs, so the unpacked
bundle runs ``inference.json`` as it is.

``unpack``: extracts into a temporary folder next to the destination, verifies every file of ``large_files.yml``
(and that every file under ``models/`` is listed), and only then moves ``<name>/`` into place; on any error
nothing is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile

from jnet.bundles.large_files import LARGE_FILES, large_files_yml
from jnet.bundles.parse import bundle_parser
from jnet.checkpoints import load_weights, parse_overrides, require_weights_file
from jnet.errors import InputError

from .export import export_torchscript
from .integrity import sha256_file, verify_large_files
from .staging import staging_folder

__all__ = ["pack_bundle", "unpack_bundle", "PACKED_ITEMS"]

logger = logging.getLogger(__name__)
PACKED_ITEMS = ("configs", "docs", "LICENSE")  # copied from the bundle folder; models/ and large_files.yml are written


def _bake_overrides(configs_dir: str, overrides: dict) -> None:
    """Write each override into every ``configs/*.json`` that holds the key at its top level."""
    used = set()
    for name in sorted(os.listdir(configs_dir)):
        if not name.endswith(".json") or name == "metadata.json":
            continue
        path = os.path.join(configs_dir, name)
        with open(path) as f:
            config = json.load(f)
        keys = [key for key in overrides if key in config]
        if keys:
            config.update({key: overrides[key] for key in keys})
            with open(path, "w") as f:
                json.dump(config, f, indent=4)
                f.write("\n")
            used.update(keys)
    unknown = sorted(set(overrides) - used)
    if unknown:
        raise InputError(f"{configs_dir}: override(s) {', '.join(unknown)} are not top-level keys of any config.")


def _stage(bundle_dir: str, stage: str, model_file: str, overrides: dict) -> str:
    """Fill ``stage`` with the bundle's files, the weights, model.ts and large_files.yml; returns how model.ts was made."""
    for item in PACKED_ITEMS:
        source = os.path.join(bundle_dir, item)
        if not os.path.exists(source):
            raise InputError(f"{source}: missing; BUNDLE_DIR must be a bundle folder (configs/, docs/, LICENSE).")
        (shutil.copytree if os.path.isdir(source) else shutil.copyfile)(source, os.path.join(stage, item))
    _bake_overrides(os.path.join(stage, "configs"), overrides)
    os.makedirs(os.path.join(stage, "models"))
    weights = os.path.join(stage, "models", "model.pt")
    shutil.copyfile(model_file, weights)
    parser = bundle_parser(stage, base="configs/inference.json")
    network = load_weights(parser.get_parsed_content("network_def"), model_file)  # errors name the user's file
    channels, size = int(parser["in_channels"]), int(parser["input_size"])
    extra_files = {}
    for name in ("metadata.json", "inference.json"):
        with open(os.path.join(stage, "configs", name), "rb") as f:
            extra_files[name] = f.read()
    method = export_torchscript(network, (1, channels, size, size), os.path.join(stage, "models", "model.ts"), extra_files)
    entries = [
        {"path": f"models/{name}", "url": "", "hash_val": sha256_file(os.path.join(stage, "models", name)), "hash_type": "sha256"}
        for name in ("model.pt", "model.ts")
    ]
    with open(os.path.join(stage, LARGE_FILES), "w") as f:
        f.write(large_files_yml(entries))
    return method


def pack_bundle(bundle_dir: str, out_dir: str = ".", model_file: str | None = None, overrides: dict | str | None = None) -> str:
    """
    Pack the bundle folder ``bundle_dir`` with the weights ``model_file`` (default ``<bundle_dir>/models/model.pt``)
    into ``out_dir/<name>_v<version>.zip``; ``overrides``: config values the weights were trained with
    (``{"features": 4}``). Refuses weights that do not fit the configured network. Returns the zip's path.
    """
    bundle_dir = os.path.abspath(bundle_dir)
    name = os.path.basename(bundle_dir)
    metadata = os.path.join(bundle_dir, "configs", "metadata.json")
    if not os.path.isfile(metadata):
        raise InputError(f"{metadata}: no such file; BUNDLE_DIR must be a bundle folder.")
    with open(metadata) as f:
        version = json.load(f).get("version")
    if not version:
        raise InputError(f"{metadata}: no 'version'.")
    model_file = model_file or os.path.join(bundle_dir, "models", "model.pt")
    require_weights_file(model_file)
    os.makedirs(out_dir, exist_ok=True)
    zip_path = os.path.join(out_dir, f"{name}_v{version}.zip")
    if os.path.exists(zip_path):
        raise InputError(f"{zip_path}: already exists; remove it, or raise 'version' in {metadata} for new weights.")
    with tempfile.TemporaryDirectory() as staging:
        stage = os.path.join(staging, name)
        os.makedirs(stage)
        method = _stage(bundle_dir, stage, model_file, parse_overrides(overrides))
        logger.info(f"{name}: models/model.ts made by torch.jit.{method}")
        partial = os.path.join(staging, os.path.basename(zip_path))  # moved into out_dir only when complete
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for root, dirs, files in os.walk(stage):
                dirs.sort()
                for file in sorted(files):
                    path = os.path.join(root, file)
                    archive.write(path, os.path.relpath(path, staging))
        shutil.move(partial, zip_path)
    return zip_path


def _top_folder(archive: zipfile.ZipFile, zip_file: str) -> str:
    tops = set()
    for member in archive.namelist():
        parts = member.replace("\\", "/").split("/")
        if member.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise InputError(f"{zip_file}: unsafe path '{member}' in the archive; refusing it.")
        tops.add(parts[0])
    if len(tops) != 1 or not all("/" in m for m in archive.namelist()):
        raise InputError(f"{zip_file}: expected one top-level bundle folder, found {sorted(tops)}.")
    return tops.pop()


def unpack_bundle(zip_file: str, out_dir: str = ".", sha256: str | None = None) -> str:
    """
    Unpack a packed bundle into ``out_dir/<name>/`` after verifying every file of its ``large_files.yml``
    (and the zip itself against ``sha256`` when given). Refuses, leaving nothing behind: a corrupt zip, unsafe
    paths, an existing destination, a mismatching or unlisted weights file. Returns the bundle's path.
    """
    if not os.path.isfile(zip_file):
        raise InputError(f"{zip_file}: no such file.")
    if sha256 and sha256_file(zip_file) != str(sha256).lower():
        raise InputError(f"{zip_file}: sha256 {sha256_file(zip_file)} does not match the expected {sha256}; refusing it.")
    try:
        archive = zipfile.ZipFile(zip_file)
    except zipfile.BadZipFile as error:
        raise InputError(f"{zip_file}: not a zip file ({error}).") from error
    with archive:
        name = _top_folder(archive, zip_file)
        destination = os.path.join(out_dir, name)
        if os.path.exists(destination):
            raise InputError(f"{destination}: already exists; remove it or choose another --out_dir.")
        with staging_folder(out_dir, ".unpack-") as staging:
            try:
                archive.extractall(staging)
            except (zipfile.BadZipFile, OSError, EOFError) as error:  # a damaged member fails its CRC check here
                raise InputError(f"{zip_file}: cannot be extracted ({error}).") from error
            bundle = os.path.join(staging, name)
            try:
                verified = {os.path.realpath(p) for p in verify_large_files(bundle)}
            except InputError as error:  # name the zip and the file inside it, not the (deleted) staging folder
                raise InputError(str(error).replace(staging + os.sep, f"{zip_file}: ")) from error
            models = os.path.join(bundle, "models")
            for file in sorted(os.listdir(models)) if os.path.isdir(models) else []:
                if os.path.realpath(os.path.join(models, file)) not in verified:
                    raise InputError(f"{zip_file}: models/{file} is not listed in {LARGE_FILES}; it cannot be verified.")
            os.rename(bundle, destination)
    return destination
