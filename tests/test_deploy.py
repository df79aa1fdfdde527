"""Distribution of trained bundles: pack -> unpack -> inference from the unpacked folder; checksums refuse
tampered weights; the export refuses pipelines the standalone runner does not implement."""

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

from conftest import BUNDLE_16, REPO, run_bundle
from jnet.bundles.parse import bundle_parser
from jnet.deploy.integrity import read_large_files, sha256_file, verify_large_files
from jnet.deploy.pack import pack_bundle, unpack_bundle
from jnet.deploy.params import deploy_params
from jnet.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore")
NAME = "prostate_mri_lowres_16"


def jnet_verb(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "jnet", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def packed(trained_root, tmp_path_factory):
    """The trained tiny prostate_mri_lowres_16 (features=4) packed by the verb, as a user runs it."""
    out = tmp_path_factory.mktemp("packed")
    result = jnet_verb("pack", BUNDLE_16, "--out_dir", out, "--model_file", os.path.join(trained_root, "models", "model.pt"), "--overrides", "{'features': 4}")
    assert result.returncode == 0, result.stderr[-3000:]
    path, digest = result.stdout.strip().splitlines()[-2:]
    assert path == str(out / f"{NAME}_v0.1.0.zip") and digest == f"sha256 {sha256_file(path)}"
    return path


def test_pack_layout_and_checksums(packed, trained_root):
    with zipfile.ZipFile(packed) as archive:
        names = set(archive.namelist())
        assert {n.split("/")[0] for n in names} == {NAME}
        for required in ("configs/inference.json", "configs/train.json", "configs/metadata.json", "docs/README.md", "LICENSE", "large_files.yml", "models/model.pt", "models/model.ts"):
            assert f"{NAME}/{required}" in names
        assert not [n for n in names if "/eval/" in n]
        weights = archive.read(f"{NAME}/models/model.pt")
        inference = json.loads(archive.read(f"{NAME}/configs/inference.json"))
    assert weights == open(os.path.join(trained_root, "models", "model.pt"), "rb").read()
    assert inference["features"] == 4  # the training override travels with the weights
    with pytest.raises(InputError, match="already exists; remove it, or raise 'version'"):
        pack_bundle(BUNDLE_16, os.path.dirname(packed), os.path.join(trained_root, "models", "model.pt"), {"features": 4})


def test_unpacked_bundle_runs_inference_json_as_shipped(packed, tiny_dataset, tmp_path):
    destination = tmp_path / "empty"
    destination.mkdir()
    bundle = destination / NAME
    assert unpack_bundle(packed, str(destination), sha256=sha256_file(packed)) == str(bundle)  # the verb's refusals: below
    assert sorted(e["path"] for e in read_large_files(str(bundle / "large_files.yml"))) == ["models/model.pt", "models/model.ts"]

    # TorchScript module equals the checkpoint in the bundle's network (dynamic batch)
    parser = bundle_parser(str(bundle), base="configs/inference.json")
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    x = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(bundle / "models" / "model.ts"))(x), network(x), atol=1e-4)

    # inference.json from the unpacked folder, no override but the data (only the package installed)
    test_image = sorted(os.path.join(tiny_dataset, "imagesTs", f) for f in os.listdir(os.path.join(tiny_dataset, "imagesTs")))[0]
    result = run_bundle(str(bundle), ["configs/inference.json"], input_files=f"['{test_image}']", num_workers=0)
    assert result.returncode == 0, result.stderr[-3000:]
    mask_path = bundle / "eval" / os.path.basename(test_image).replace(".nii.gz", "_seg.nii.gz")
    mask, source = nib.load(mask_path), nib.load(test_image)
    assert mask.shape == source.shape[:3] and np.allclose(mask.affine, source.affine)
    assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1, 2}


def _tampered_copy(packed, path, member=f"{NAME}/models/model.pt"):
    """The zip with one byte of ``member`` changed (a valid zip: the member's CRC matches its new bytes)."""
    with zipfile.ZipFile(packed) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = bytearray(source.read(info))
            if info.filename == member:
                data[len(data) // 2] ^= 0xFF
            target.writestr(info, bytes(data))
    return path


def test_unpack_refuses_tampered_weights_and_leaves_nothing(packed, tmp_path):
    tampered = _tampered_copy(packed, tmp_path / "tampered.zip")
    destination = tmp_path / "out"
    result = jnet_verb("unpack", tampered, "--out_dir", destination, "--trust_unverified")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    # the zip and its member, named by the manifest check (which runs before large_files.yml's)
    assert message == f"ERROR: {tampered}: refused - models/model.pt was changed (its sha256 differs from manifest.json)."
    assert not destination.exists()  # created by unpack, removed again: nothing half-extracted

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="models/model.pt was changed"):
        unpack_bundle(str(tampered), str(existing), trust_unverified=True)
    assert os.listdir(existing) == ["keep.txt"]  # the user's folder as it was


def test_unpack_refuses_unlisted_weights_a_wrong_zip_hash_and_an_existing_bundle(packed, tmp_path):
    with zipfile.ZipFile(packed) as source, zipfile.ZipFile(tmp_path / "extra.zip", "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr(f"{NAME}/models/model_baseline.pt", b"unverified")
    with pytest.raises(InputError, match="models/model_baseline.pt is not in the manifest"):
        unpack_bundle(str(tmp_path / "extra.zip"), str(tmp_path / "a"), trust_unverified=True)
    with pytest.raises(InputError, match="does not match the expected"):
        unpack_bundle(packed, str(tmp_path / "b"), sha256="0" * 64)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    unpack_bundle(packed, str(tmp_path / "c"), sha256=sha256_file(packed))
    with pytest.raises(InputError, match="already exists"):
        unpack_bundle(packed, str(tmp_path / "c"), sha256=sha256_file(packed))


def test_unpack_refuses_paths_outside_the_bundle(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr(f"{NAME}/large_files.yml", "large_files:\n")
        archive.writestr(f"{NAME}/../../escaped.txt", "x")
    with pytest.raises(InputError, match="unsafe path"):
        unpack_bundle(str(tmp_path / "evil.zip"), str(tmp_path / "out"), trust_unverified=True)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out").exists()


def test_verify_large_files(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"weights")
    digest = sha256_file(str(tmp_path / "models" / "model.pt"))
    listing = tmp_path / "large_files.yml"
    listing.write_text(f'large_files:\n  - path: "models/model.pt"\n    url: ""  # later\n    hash_val: "{digest}"\n    hash_type: "sha256"\n')
    assert verify_large_files(str(tmp_path)) == [os.path.realpath(tmp_path / "models" / "model.pt")]
    (tmp_path / "models" / "model.pt").write_bytes(b"weightz")
    with pytest.raises(InputError, match=r"model.pt: sha256 [0-9a-f]{64} does not match large_files.yml"):
        verify_large_files(str(tmp_path))
    os.remove(tmp_path / "models" / "model.pt")
    with pytest.raises(InputError, match="listed in large_files.yml but missing"):
        verify_large_files(str(tmp_path))
    # the generated bundles' own large_files.yml (weights not published yet: empty hash)
    shutil.copy(os.path.join(BUNDLE_16, "large_files.yml"), listing)
    assert read_large_files(str(listing)) == [{"path": "models/model.pt", "url": "", "hash_val": "", "hash_type": "sha256"}]
    with pytest.raises(InputError, match="has no hash_val"):
        verify_large_files(str(tmp_path))
    assert verify_large_files(str(tmp_path), require_hash=False) == []
    listing.write_text('large_files:\n  - path: "../outside.pt"\n    hash_val: "00"\n')
    with pytest.raises(InputError, match="points outside the bundle"):
        verify_large_files(str(tmp_path))


def test_pack_refuses_weights_trained_with_other_overrides(trained_root, tmp_path):
    trained_with = r"""here features 4 \(its first convolution has 4 filters\): --features 4 in a bundle command, --overrides "\{'features': 4\}" for jnet export and pack\.$"""
    with pytest.raises(InputError, match=r"model.pt: the weights do not fit the bundle's network_def .* " + trained_with):
        pack_bundle(BUNDLE_16, str(tmp_path), os.path.join(trained_root, "models", "model.pt"))
    not_weights = tmp_path.parent / "volume.nii.gz"  # a NIfTI passed as --model_file: no unsafe-load advice
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(not_weights))
    with pytest.raises(InputError, match=r"volume.nii.gz: not a PyTorch checkpoint of weights \(refused unread") as info:
        pack_bundle(BUNDLE_16, str(tmp_path), str(not_weights))
    assert "weights_only" not in str(info.value)
    with pytest.raises(InputError, match="override.*nonexistent_key"):
        pack_bundle(BUNDLE_16, str(tmp_path), os.path.join(trained_root, "models", "model.pt"), {"nonexistent_key": 1})
    assert os.listdir(tmp_path) == []


def test_pack_and_export_without_trained_weights_say_how_to_get_them(tmp_path):
    from jnet.deploy.kit import export_kit

    bundle = tmp_path / NAME
    shutil.copytree(BUNDLE_16, bundle, ignore=shutil.ignore_patterns("models", "eval"))
    missing = f"{bundle}/models/model.pt: no such weights file (train the bundle first, or pass --model_file)."
    for make in (lambda: pack_bundle(str(bundle), str(tmp_path / "dist")), lambda: export_kit(str(bundle), str(tmp_path / "kit"))):
        with pytest.raises(InputError) as info:
            make()
        assert str(info.value) == missing
    assert sorted(os.listdir(tmp_path)) == [NAME]  # no zip folder, no kit folder


def test_export_refuses_a_pipeline_the_runner_does_not_implement():
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    parser["image_grid_transform"] = {"_target_": "Spacingd", "keys": "image", "pixdim": [1.0, 1.0, -1]}
    with pytest.raises(InputError, match=r"'preprocessing' is \[.*Spacingd.*\]; the standalone runner implements"):
        deploy_params(parser, NAME)
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    parser["output_labels"] = {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5}
    with pytest.raises(InputError, match=r"'postprocessing' InvertToLabelsd uses \[Activationd, AsDiscreted\]; the standalone runner implements"):
        deploy_params(parser, NAME)
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    parser["image_grid_transform"]["mode"] = "nearest"
    with pytest.raises(InputError, match=r"OutputGridd\(size=256, mode=nearest\) .* not implemented by the standalone"):
        deploy_params(parser, NAME)
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    parser["lowres_mode"] = "nearest"  # a supported option: carried into deploy.json
    assert deploy_params(parser, NAME)["lowres_mode"] == "nearest"


def test_readme_onnx_commands_give_the_same_model(tmp_path, monkeypatch):
    """The bundle README's `monai.bundle onnx_export` line (run in-process through python-fire, as the CLI parses
    it) and `jnet export` write ONNX models with the same names, dynamic batch and outputs."""
    import shlex

    import fire
    import onnxruntime as ort
    from monai.bundle.scripts import onnx_export

    from jnet.deploy.kit import export_kit

    bundle = tmp_path / NAME
    shutil.copytree(BUNDLE_16, bundle, ignore=shutil.ignore_patterns("models", "eval"))
    (bundle / "models").mkdir()
    torch.manual_seed(0)
    torch.save(bundle_parser(str(bundle), base="configs/inference.json").get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    readme = open(bundle / "docs" / "README.md").read()
    line = next(s.strip() for s in readme.splitlines() if s.strip().startswith("python -m monai.bundle onnx_export"))
    monkeypatch.chdir(bundle)
    fire.Fire({"onnx_export": onnx_export}, command=shlex.split(line)[3:])
    export_kit(str(bundle), str(tmp_path / "kit"))
    x = np.random.default_rng(0).standard_normal((3, 2, 16, 16)).astype(np.float32)
    outputs = []
    for path in (bundle / "models" / "model.onnx", tmp_path / "kit" / "model.onnx"):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["pred"]
        outputs.append(session.run(None, {"image": x})[0])
    assert outputs[0].shape == (3, 3, 256, 256) and np.abs(outputs[0] - outputs[1]).max() <= 1e-5
