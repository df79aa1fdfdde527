"""A received bundle is trusted only for what was checked (docs/security.md): every attack below is tried on a real
packed zip, rebuilt with real tampering, and refused by ``unpack`` and ``verify`` with the file named and nothing
written; the payloads never run. Also: eval_metrics of the packed weights only, input-size refusal, uniform masks."""

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import BUNDLE_16, REPO, TINY_OVERRIDES, run_bundle
from jnet.deploy.manifest import MANIFEST, SIGNATURE, write_manifest
from jnet.deploy.pack import LIMITS, pack_bundle, unpack_bundle, verify_bundle
from jnet.errors import InputError
from jnet.provenance import sha256_file

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(900)]
NAME = "prostate_mri_lowres_16"
HAVE_SSH_KEYGEN = shutil.which("ssh-keygen") is not None
needs_ssh_keygen = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen (OpenSSH 8.1+) not installed: signatures cannot be made or checked")


def jnet_verb(*args):
    return subprocess.run([sys.executable, "-m", "jnet", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)


def _keypair(folder, name):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)], check=True)
    return str(folder / name), str(folder / f"{name}.pub")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    if not HAVE_SSH_KEYGEN:
        pytest.skip("ssh-keygen (OpenSSH 8.1+) not installed: signatures cannot be made or checked")
    folder = tmp_path_factory.mktemp("keys")
    return {"signer": _keypair(folder, "signer"), "other": _keypair(folder, "other")}


@pytest.fixture(scope="module")
def evaluated_root(trained_root, tiny_dataset, tmp_path_factory):
    """A copy of the tiny trained bundle root, evaluated by the bundle's own evaluate.json (its eval/ folder)."""
    root = str(tmp_path_factory.mktemp("evaluated") / "root")
    shutil.copytree(trained_root, root)
    result = run_bundle(BUNDLE_16, ["configs/train.json", "configs/evaluate.json"], bundle_root=root, dataset_dir=tiny_dataset, **TINY_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def signed_zip(evaluated_root, keys, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed")
    result = jnet_verb("pack", BUNDLE_16, "--out_dir", out, "--model_file", os.path.join(evaluated_root, "models", "model.pt"),
                       "--overrides", "{'features': 4}", "--eval_dir", os.path.join(evaluated_root, "eval"), "--sign", keys["signer"][0])
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-2]


def _extract(zip_path, folder):
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    return os.path.join(folder, NAME)


def _rezip(bundle, zip_path):
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, _, files in os.walk(bundle):
            for file in sorted(files):
                path = os.path.join(root, file)
                archive.write(path, os.path.relpath(path, os.path.dirname(bundle)))
    return str(zip_path)


PAYLOAD = "$__import__('pathlib').Path({marker!r}).touch()"


def _add_payload(bundle, marker):
    path = os.path.join(bundle, "configs", "inference.json")
    config = json.load(open(path))
    config["initialize"].append(PAYLOAD.format(marker=str(marker)))
    config["network_def"]["_requires_"] = PAYLOAD.format(marker=str(marker))  # runs when the network is built
    json.dump(config, open(path, "w"), indent=4)


def _tamper(kind, bundle, marker):
    if kind == "config edited":
        _add_payload(bundle, marker)
    elif kind == "file added":
        os.makedirs(os.path.join(bundle, "scripts"))
        open(os.path.join(bundle, "scripts", "evil.py"), "w").write(f"open({str(marker)!r}, 'w')\n")
    elif kind == "file removed":
        os.remove(os.path.join(bundle, "docs", "README.md"))
    elif kind == "weights swapped":
        state = torch.load(os.path.join(bundle, "models", "model.pt"), weights_only=True)
        torch.save({k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state.items()}, os.path.join(bundle, "models", "model.pt"))
    elif kind == "manifest edited":  # the attacker edits a config and rewrites the manifest to match it
        _add_payload(bundle, marker)
        write_manifest(bundle, NAME, "0.1.0")
    return {
        "config edited": "configs/inference.json was changed",
        "file added": "scripts/evil.py is not in the manifest",
        "file removed": "docs/README.md is missing",
        "weights swapped": "models/model.pt was changed",
        "manifest edited": "the signature of manifest.json does not verify",
    }[kind]


TAMPERING = ["config edited", "file added", "file removed", "weights swapped", "manifest edited"]


@pytest.mark.parametrize("kind", TAMPERING)
def test_tampering_is_refused_by_unpack_and_verify_with_the_file_named(kind, signed_zip, keys, tmp_path):
    marker = tmp_path / "payload_ran"
    bundle = _extract(signed_zip, tmp_path / "edit")
    expected = _tamper(kind, bundle, marker)
    tampered = _rezip(bundle, tmp_path / f"{NAME}_v0.1.0.zip")
    result = jnet_verb("unpack", tampered, "--out_dir", tmp_path / "received", "--trusted_key", keys["signer"][1])
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr and line.startswith(f"ERROR: {tampered}: ")
    assert expected in line, line
    assert not (tmp_path / "received").exists()  # nothing written
    result = jnet_verb("verify", bundle, "--trusted_key", keys["signer"][1])
    assert result.returncode == 1 and expected in result.stderr.strip().splitlines()[-1]
    assert not marker.exists()  # no payload ran


@needs_ssh_keygen
def test_the_genuine_signed_bundle_unpacks_verifies_and_another_key_is_refused(signed_zip, keys, tmp_path):
    bundle = unpack_bundle(signed_zip, str(tmp_path / "ok"), trusted_key=keys["signer"][1])
    assert os.path.isfile(os.path.join(bundle, SIGNATURE))
    assert verify_bundle(bundle, keys["signer"][1]) == {"files": len(json.load(open(os.path.join(bundle, MANIFEST)))["files"]), "signed": True, "weights_loaded": True}
    result = jnet_verb("unpack", signed_zip, "--out_dir", tmp_path / "other", "--trusted_key", keys["other"][1])
    assert result.returncode == 1 and "does not verify with" in result.stderr and not (tmp_path / "other").exists()
    unsigned = _extract(signed_zip, tmp_path / "unsigned")
    os.remove(os.path.join(unsigned, SIGNATURE))
    with pytest.raises(InputError, match=r"not signed \(no manifest.json.sig\), but --trusted_key asks for a signature"):
        unpack_bundle(_rezip(unsigned, tmp_path / "unsigned.zip"), str(tmp_path / "u"), trusted_key=keys["signer"][1])


def test_an_unsigned_bundle_needs_a_checksum_or_an_explicit_risk(evaluated_root, tmp_path):
    zip_path = pack_bundle(BUNDLE_16, str(tmp_path / "dist"), os.path.join(evaluated_root, "models", "model.pt"), {"features": 4})
    result = jnet_verb("unpack", zip_path, "--out_dir", tmp_path / "a")
    assert result.returncode == 1 and "nothing says who made this bundle, and its configs execute code" in result.stderr
    assert not (tmp_path / "a").exists()
    assert os.path.isdir(unpack_bundle(zip_path, str(tmp_path / "b"), sha256=sha256_file(zip_path)))
    result = jnet_verb("unpack", zip_path, "--out_dir", tmp_path / "c", "--trust_unverified")
    assert result.returncode == 0 and "its configs execute code unverified" in result.stderr
    # verify without a key: the files are checked, the configs' code is not run (the network is not built)
    marker = tmp_path / "payload_ran"
    bundle = str(tmp_path / "c" / NAME)
    _add_payload(bundle, marker)
    write_manifest(bundle, NAME, "0.1.0")
    result = jnet_verb("verify", bundle)
    assert result.returncode == 0 and "UNSIGNED check: nothing proves who made them" in result.stdout
    assert not marker.exists()


def _bomb(tmp_path):
    bundle = tmp_path / "bomb" / NAME
    for name in ("configs/metadata.json", "configs/inference.json", "large_files.yml", MANIFEST):
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_text("{}")
    with open(bundle / "models.bin", "wb") as f:
        for _ in range(64):
            f.write(b"\0" * (1 << 20))  # 64 MiB of zeros: ~1000x
    return _rezip(str(bundle), tmp_path / "bomb.zip")


def test_a_zip_bomb_and_a_bundle_without_inference_json_are_refused_with_nothing_written(signed_zip, tmp_path):
    bomb = _bomb(tmp_path)
    assert os.path.getsize(bomb) < 1 << 20
    with pytest.raises(InputError, match=rf"expands \d+x .* limit {LIMITS['compression_ratio']:.0f}x\): a zip bomb"):
        unpack_bundle(bomb, str(tmp_path / "out"), trust_unverified=True)
    bundle = _extract(signed_zip, tmp_path / "noinf")
    os.remove(os.path.join(bundle, "configs", "inference.json"))
    result = jnet_verb("unpack", _rezip(bundle, tmp_path / "noinf.zip"), "--out_dir", tmp_path / "out", "--trust_unverified")
    assert result.returncode == 1 and "not a packed bundle - configs/inference.json missing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_consistent_but_useless_weights_are_refused(signed_zip, tmp_path):
    """A rebuilt bundle whose manifest and large_files.yml match what it holds - an 11-byte model.pt, or no weights
    listed at all - is still refused (with --trust_unverified, the only way such a bundle gets this far)."""
    from jnet.bundles.large_files import large_files_yml

    for case, expected in (("tiny", "models/model.pt: not a PyTorch checkpoint"), ("empty", "large_files.yml lists no weights")):
        bundle = _extract(signed_zip, tmp_path / case)
        os.remove(os.path.join(bundle, SIGNATURE))
        weights = os.path.join(bundle, "models", "model.pt")
        if case == "tiny":
            open(weights, "wb").write(b"not weights")
            entries = [{"path": "models/model.pt", "url": "", "hash_val": sha256_file(weights), "hash_type": "sha256"},
                       {"path": "models/model.ts", "url": "", "hash_val": sha256_file(weights.replace(".pt", ".ts")), "hash_type": "sha256"}]
        else:
            entries = []
        open(os.path.join(bundle, "large_files.yml"), "w").write(large_files_yml(entries))
        write_manifest(bundle, NAME, "0.1.0")
        zip_path = _rezip(bundle, tmp_path / f"{case}.zip")
        with pytest.raises(InputError, match=expected):
            unpack_bundle(zip_path, str(tmp_path / f"out_{case}"), trust_unverified=True)
        assert not (tmp_path / f"out_{case}").exists()


def test_packed_eval_metrics_are_the_bundles_own_evaluation_of_these_weights(signed_zip, evaluated_root, trained_root, tmp_path):
    with zipfile.ZipFile(signed_zip) as archive:
        metadata = json.loads(archive.read(f"{NAME}/configs/metadata.json"))
    with open(os.path.join(evaluated_root, "eval", "val_mean_dice_summary.csv")) as f:
        rows = {row["class"]: float(row["mean"]) for row in csv.DictReader(f)}
    assert metadata["eval_metrics"]["peripheral_zone_dice"] == round(rows["class0"], 4)
    assert metadata["eval_metrics"]["transition_zone_dice"] == round(rows["class1"], 4)
    assert metadata["eval_metrics"]["mean_dice"] == pytest.approx((rows["class0"] + rows["class1"]) / 2, abs=1e-4)
    weights = sha256_file(os.path.join(evaluated_root, "models", "model.pt"))
    assert metadata["eval_metrics_source"].startswith(f"configs/evaluate.json on these weights (sha256 {weights[:12]})")
    training = metadata["training"]
    assert training["model_sha256"] == weights and training["epochs"] == 1 and training["input_size"] == 16
    assert training["volumes"] == 4 and training["dataset"].startswith("Task05_Prostate_tiny")  # 6 volumes, 3 folds
    assert "--epochs" in training["command"] and not [a for a in training["command"] if os.path.isabs(a)]  # no machine's paths
    assert " eval_metrics: " not in metadata["description"]  # the generator's sweep source is not these weights'

    # other weights with the same eval/ folder: the figures are not theirs
    other = tmp_path / "other.pt"
    state = torch.load(os.path.join(trained_root, "models", "model.pt"), weights_only=True)
    torch.save({k: v * 1.01 if v.is_floating_point() else v for k, v in state.items()}, other)
    zip_path = pack_bundle(BUNDLE_16, str(tmp_path / "dist"), str(other), {"features": 4}, eval_dir=os.path.join(evaluated_root, "eval"))
    with zipfile.ZipFile(zip_path) as archive:
        metadata = json.loads(archive.read(f"{NAME}/configs/metadata.json"))
    assert metadata["eval_metrics"] == {} and metadata["eval_metrics_source"].startswith("not measured for these weights")
    assert metadata["training"].startswith("unknown: no training record of these weights")


def test_a_failed_pack_leaves_no_out_dir(trained_root, tmp_path):
    with pytest.raises(InputError, match="the weights do not fit"):
        pack_bundle(BUNDLE_16, str(tmp_path / "new_dist"), os.path.join(trained_root, "models", "model.pt"))  # features 4 weights
    assert not (tmp_path / "new_dist").exists()


def test_weights_for_another_input_size_are_refused_with_one_line(trained_root, tiny_dataset, tmp_path):
    result = run_bundle(BUNDLE_16, ["configs/inference.json"], bundle_root=trained_root, dataset_dir=tiny_dataset,
                        output_dir=str(tmp_path / "out"), input_size=32, **TINY_OVERRIDES)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = [x for x in result.stderr.splitlines() if x.startswith("ERROR: ")][-1]
    assert line == (f"ERROR: {trained_root}/models/model.pt: the weights were trained for 16x16 inputs, this network is "
                    "configured for 32x32 (input_size); use the 16x16 bundle, or --input_size 16.")


def test_a_mask_of_one_label_everywhere_is_warned_about(trained_root, tiny_dataset, tmp_path):
    """Weights whose last bias makes background win everywhere: the bundle and the standalone runner both warn."""
    from jnet.bundles.parse import bundle_parser

    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    state = torch.load(os.path.join(trained_root, "models", "model.pt"), weights_only=True)
    parser = bundle_parser(BUNDLE_16)
    parser["features"] = 4
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(state)
    final_bias = [k for k, v in network.state_dict().items() if k.endswith("bias") and tuple(v.shape) == (3,)][-1]
    state[final_bias] = torch.tensor([1e3, -1e3, -1e3])
    torch.save(state, root / "models" / "model.pt")
    result = run_bundle(BUNDLE_16, ["configs/inference.json"], bundle_root=str(root), dataset_dir=tiny_dataset,
                        output_dir=str(tmp_path / "out"), **TINY_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    image = sorted(os.listdir(os.path.join(tiny_dataset, "imagesTs")))[0]
    warning = f"{os.path.join(tiny_dataset, 'imagesTs', image)}: every voxel of the mask is label 0 - check the weights (trained?)"
    assert warning in result.stdout + result.stderr
    mask = np.asarray(nib.load(tmp_path / "out" / image.replace(".nii.gz", "_seg.nii.gz")).dataobj)
    assert set(np.unique(mask)) == {0}  # written all the same: a warning, not a refusal
