"""Distribution of trained bundles as model-zoo zips, and their checked unpacking (docs/security.md).

``pack``: ``<name>_v<version>.zip`` holding one top-level ``<name>/`` with ``configs/``, ``docs/``, ``LICENSE``,
``models/model.pt``, ``models/model.ts``, ``large_files.yml`` (both weights files with their sha256),
``manifest.json`` (every file: path, size, sha256) and, with ``--sign KEY``, ``manifest.json.sig`` (Ed25519,
OpenSSH). The config values the weights were trained with (``overrides``) are written into the packed configs, so
the unpacked bundle runs ``inference.json`` as it is; ``metadata.json`` gets the ``eval_metrics`` and the training
record of THESE weights (matched by sha256), or says they were not measured.

``unpack`` / ``verify``: limits (members, sizes, compression ratio) and required files checked before anything is
extracted; every file against the manifest; the signature against ``--trusted_key`` (or the zip against
``--sha256``; ``--trust_unverified`` otherwise); the weights against ``large_files.yml`` and the bundle's network.
On any error nothing is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile

from jnet.bundles.large_files import LARGE_FILES, large_files_yml, read_large_files
from jnet.bundles.metrics import evaluation_entry, metric_class_names
from jnet.bundles.parse import bundle_parser
from jnet.checkpoints import load_weights, parse_overrides, require_weights_file
from jnet.errors import InputError
from jnet.provenance import EVALUATION_RECORD, read_record, training_record_path

from .export import export_torchscript
from .integrity import sha256_file, verify_large_files
from .manifest import MANIFEST, SIGNATURE, verify_manifest, write_manifest
from .signing import sign_file, verify_signature
from .staging import staging_folder

__all__ = ["pack_bundle", "unpack_bundle", "verify_bundle", "PACKED_ITEMS", "REQUIRED_FILES", "LIMITS"]

logger = logging.getLogger(__name__)
PACKED_ITEMS = ("configs", "docs", "LICENSE")  # copied from the bundle folder; models/ and large_files.yml are written
REQUIRED_FILES = ("configs/metadata.json", "configs/inference.json", LARGE_FILES, MANIFEST)  # and the listed weights
LIMITS = {  # a bundle is ~30 files and a few MB; these refuse zip bombs before anything is extracted
    "members": 2000,
    "uncompressed_bytes": 4 << 30,
    "compression_ratio": 100.0,  # uncompressed / compressed over all members (weights ~1.1, JSON ~5)
}
NOT_MEASURED = "not measured for these weights: run configs/evaluate.json with them before packing"


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


def _eval_metrics(stage: str, weights: str, eval_dir: str) -> tuple[dict, str]:
    """The figures of ``eval_dir`` when its evaluation record names these weights (their sha256 ``weights``), and
    their source."""
    record = read_record(os.path.join(eval_dir, EVALUATION_RECORD))
    if not record or record.get("model_sha256") != weights:
        return {}, NOT_MEASURED
    parser = bundle_parser(stage)
    channels = parser["_meta_"]["network_data_format"]["outputs"]["pred"]["channel_def"]
    names = metric_class_names(channels, bool(parser["include_background"]))
    try:
        entry = evaluation_entry(eval_dir, names)
    except (OSError, KeyError, ValueError):
        return {}, NOT_MEASURED
    where = f"{record.get('dataset')}, {record.get('volumes')} volumes" if record.get("dataset") else "its data"
    return entry, f"configs/evaluate.json on these weights (sha256 {weights[:12]}): {where}; overrides {' '.join(record.get('command', []))}".strip()


def _training(model_file: str, weights: str) -> dict | str:
    record = read_record(training_record_path(model_file))
    if not record or record.get("model_sha256") != weights:
        return "unknown: no training record of these weights (models/<model>_training.json, written by train.json)"
    return record


def _write_metadata(stage: str, model_file: str, eval_dir: str) -> dict:
    """``metadata.json`` describing THESE weights: their eval_metrics (or that there are none) and training record."""
    path = os.path.join(stage, "configs", "metadata.json")
    with open(path) as f:
        metadata = json.load(f)
    weights = sha256_file(model_file)  # what both records must name
    entry, source = _eval_metrics(stage, weights, eval_dir)
    metadata["eval_metrics"] = entry
    metadata["eval_metrics_source"] = source
    metadata["training"] = _training(model_file, weights)
    metadata["description"] = metadata.get("description", "").split(" eval_metrics: ")[0]  # the generator's source
    with open(path, "w") as f:
        json.dump(metadata, f, indent=4)
        f.write("\n")
    return metadata


def _stage(bundle_dir: str, stage: str, model_file: str, overrides: dict, eval_dir: str) -> str:
    """Fill ``stage`` with the bundle's files, the weights, model.ts and large_files.yml; returns how model.ts was made."""
    for item in PACKED_ITEMS:
        source = os.path.join(bundle_dir, item)
        if not os.path.exists(source):
            raise InputError(f"{source}: missing; BUNDLE_DIR must be a bundle folder (configs/, docs/, LICENSE).")
        (shutil.copytree if os.path.isdir(source) else shutil.copyfile)(source, os.path.join(stage, item))
    _bake_overrides(os.path.join(stage, "configs"), overrides)
    parser = bundle_parser(stage, base="configs/inference.json")
    network = load_weights(parser.get_parsed_content("network_def"), model_file)  # errors name the user's file
    _write_metadata(stage, model_file, eval_dir)
    os.makedirs(os.path.join(stage, "models"))
    shutil.copyfile(model_file, os.path.join(stage, "models", "model.pt"))
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


def pack_bundle(
    bundle_dir: str,
    out_dir: str = ".",
    model_file: str | None = None,
    overrides: dict | str | None = None,
    sign: str | None = None,
    eval_dir: str | None = None,
) -> str:
    """
    Pack the bundle folder ``bundle_dir`` with the weights ``model_file`` (default ``<bundle_dir>/models/model.pt``)
    into ``out_dir/<name>_v<version>.zip``; ``overrides``: config values the weights were trained with
    (``{"features": 4}``); ``sign``: an OpenSSH Ed25519 private key that signs the manifest; ``eval_dir``: where
    ``evaluate.json`` wrote its figures for these weights (default ``<bundle_dir>/eval``). Refuses weights that do
    not fit the configured network; a failure leaves ``out_dir`` as it was. Returns the zip's path.
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
    zip_path = os.path.join(out_dir, f"{name}_v{version}.zip")
    if os.path.exists(zip_path):
        raise InputError(f"{zip_path}: already exists; remove it, or raise 'version' in {metadata} for new weights.")
    with staging_folder(out_dir, ".pack-") as staging:
        stage = os.path.join(staging, name)
        os.makedirs(stage)
        method = _stage(bundle_dir, stage, model_file, parse_overrides(overrides), eval_dir or os.path.join(bundle_dir, "eval"))
        logger.info(f"{name}: models/model.ts made by torch.jit.{method}")
        write_manifest(stage, name, version)
        if sign:
            sign_file(os.path.join(stage, MANIFEST), sign)
        partial = os.path.join(staging, os.path.basename(zip_path))  # moved into out_dir only when complete
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for root, dirs, files in os.walk(stage):
                dirs.sort()
                for file in sorted(files):
                    path = os.path.join(root, file)
                    archive.write(path, os.path.relpath(path, staging))
        os.replace(partial, zip_path)
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


def _check_limits(archive: zipfile.ZipFile, zip_file: str, name: str) -> None:
    """Refuse, before extracting anything, an archive over :data:`LIMITS` or without a required file."""
    members = archive.infolist()
    if len(members) > LIMITS["members"]:
        raise InputError(f"{zip_file}: {len(members)} members (a bundle has tens; limit {LIMITS['members']}); refusing it.")
    total = sum(m.file_size for m in members)
    packed = max(sum(m.compress_size for m in members), 1)
    if total > LIMITS["uncompressed_bytes"]:
        raise InputError(f"{zip_file}: expands to {total / 2**30:.1f} GiB (limit {LIMITS['uncompressed_bytes'] / 2**30:.0f} GiB); refusing it.")
    if total / packed > LIMITS["compression_ratio"]:
        raise InputError(
            f"{zip_file}: expands {total / packed:.0f}x ({packed / 2**20:.1f} MiB -> {total / 2**20:.0f} MiB; limit "
            f"{LIMITS['compression_ratio']:.0f}x): a zip bomb, not a bundle; refusing it."
        )
    names = {m.filename for m in members}
    missing = [f for f in REQUIRED_FILES if f"{name}/{f}" not in names]
    if missing:
        raise InputError(f"{zip_file}: not a packed bundle - {', '.join(missing)} missing; refusing it.")


def verify_bundle(bundle_dir: str, trusted_key: str | None = None, label: str | None = None, trusted: bool = False) -> dict:
    """
    Check a bundle folder before any run: every file against ``manifest.json`` (changed, missing, unexpected), the
    manifest's signature against ``trusted_key`` when given, the required files, the weights against
    ``large_files.yml`` (at least one entry, every one with a hash), and - once the bundle is trusted (a verified
    signature, or ``trusted``: the caller checked the zip's checksum or accepted the risk) - that
    ``models/model.pt`` loads into the bundle's network: building ``network_def`` runs the configs' code, which an
    unverified bundle must not do. ``label`` names the bundle in messages.
    Returns ``{"files": n, "signed": bool, "weights_loaded": bool}``.
    """
    label = label or bundle_dir
    manifest = verify_manifest(bundle_dir, label)
    signed = False
    if trusted_key:
        verify_signature(os.path.join(bundle_dir, MANIFEST), os.path.join(bundle_dir, SIGNATURE), trusted_key, label)
        signed = True
    missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(bundle_dir, f))]
    if missing:
        raise InputError(f"{label}: not a packed bundle - {', '.join(missing)} missing.")
    if not read_large_files(os.path.join(bundle_dir, LARGE_FILES)):
        raise InputError(f"{label}: {LARGE_FILES} lists no weights; the bundle cannot be verified.")
    try:
        verified = {os.path.realpath(p) for p in verify_large_files(bundle_dir)}
    except InputError as error:
        raise InputError(str(error).replace(os.path.abspath(bundle_dir) + os.sep, f"{label}: ").replace(bundle_dir + os.sep, f"{label}: ")) from error
    models = os.path.join(bundle_dir, "models")
    for file in sorted(os.listdir(models)) if os.path.isdir(models) else []:
        if file.endswith((".pt", ".ts")) and os.path.realpath(os.path.join(models, file)) not in verified:
            raise InputError(f"{label}: models/{file} is not listed in {LARGE_FILES}; it cannot be verified.")
    weights = os.path.join(bundle_dir, "models", "model.pt")
    if os.path.realpath(weights) not in verified:
        raise InputError(f"{label}: models/model.pt is not listed in {LARGE_FILES}.")
    if not (signed or trusted):
        return {"files": len(manifest["files"]), "signed": False, "weights_loaded": False}
    parser = bundle_parser(bundle_dir, base="configs/inference.json")
    try:
        load_weights(parser.get_parsed_content("network_def"), weights)
    except InputError as error:
        raise InputError(str(error).replace(weights, f"{label}: models/model.pt")) from error
    return {"files": len(manifest["files"]), "signed": signed, "weights_loaded": True}


def unpack_bundle(
    zip_file: str,
    out_dir: str = ".",
    sha256: str | None = None,
    trusted_key: str | None = None,
    trust_unverified: bool = False,
) -> str:
    """
    Unpack a packed bundle into ``out_dir/<name>/``. Trust comes from a signature verified with ``trusted_key``
    (an OpenSSH Ed25519 public key) or the zip's ``sha256`` received from its sender; without either the bundle is
    refused unless ``trust_unverified``, and then a warning says its configs execute code unverified. Refuses,
    leaving nothing behind: a corrupt zip, unsafe paths, a zip over :data:`LIMITS`, a missing required file, an
    existing destination, and everything :func:`verify_bundle` refuses. Returns the bundle's path.
    """
    if not os.path.isfile(zip_file):
        raise InputError(f"{zip_file}: no such file.")
    if sha256 and sha256_file(zip_file) != str(sha256).lower():
        raise InputError(f"{zip_file}: sha256 {sha256_file(zip_file)} does not match the expected {sha256}; refusing it.")
    if not (trusted_key or sha256 or trust_unverified):
        raise InputError(
            f"{zip_file}: nothing says who made this bundle, and its configs execute code - pass --trusted_key PUB "
            "(the signer's public key), --sha256 (the checksum its sender gave you) or, at your own risk, --trust_unverified."
        )
    try:
        archive = zipfile.ZipFile(zip_file)
    except zipfile.BadZipFile as error:
        raise InputError(f"{zip_file}: not a zip file ({error}).") from error
    with archive:
        name = _top_folder(archive, zip_file)
        _check_limits(archive, zip_file, name)
        destination = os.path.join(out_dir, name)
        if os.path.exists(destination):
            raise InputError(f"{destination}: already exists; remove it or choose another --out_dir.")
        with staging_folder(out_dir, ".unpack-") as staging:
            try:
                archive.extractall(staging)
            except (zipfile.BadZipFile, OSError, EOFError) as error:  # a damaged member fails its CRC check here
                raise InputError(f"{zip_file}: cannot be extracted ({error}).") from error
            bundle = os.path.join(staging, name)
            verify_bundle(bundle, trusted_key, label=zip_file, trusted=bool(sha256) or trust_unverified)
            os.rename(bundle, destination)
    if not (trusted_key or sha256):
        logger.warning(
            f"{zip_file}: unpacked with --trust_unverified - its files match its manifest, but nothing proves who made "
            "them: its configs execute code unverified."
        )
    return destination
