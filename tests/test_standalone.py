"""The standalone runner (jnet/deploy/runner/ on jnet/processing/): Python 3.6 syntax, no MONAI/PyTorch, and the same masks as
the bundle's own inference.json - step by step in-process, and end to end against `python -m monai.bundle run`."""

import ast
import glob
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, Resize

from conftest import BUNDLE_16, BUNDLES, run_bundle
from envs import ENVS
from jnet.bundles.parse import bundle_parser
from jnet.bundles.matrix import bundle_specs
from jnet.cli import trtexec
from jnet.tools.synthetic.prostate import make_prostate_case
from jnet.tools.synthetic.brats import make_brats_case
import jnet.deploy.runner
from jnet import processing as standalone  # the runner's numpy steps
from jnet.deploy.kit import RUNNER_NAME, export_kit
from jnet.deploy.params import deploy_params
from jnet.errors import InputError
from jnet.transforms import LowResInputd

pytestmark = pytest.mark.filterwarnings("ignore")
RUNNER_PACKAGES = (standalone, jnet.deploy.runner)  # what the kit's runner folder holds, under their package path
RUNNER_SOURCES = {
    os.path.join(*package.__name__.split("."), name): os.path.join(os.path.dirname(package.__file__), name)
    for package in RUNNER_PACKAGES
    for name in sorted(os.listdir(os.path.dirname(package.__file__)))
    if name.endswith(".py")
}  # kit-relative path -> source file
RUNNER_MODULES = ("jnet.processing", "jnet.deploy.runner")  # the jnet modules the runner may import
STDLIB_OK = {"argparse", "glob", "gzip", "json", "math", "os", "re", "sys", "time"}
OPTIONAL_OK = {"onnxruntime", "tensorrt", "pycuda", "cuda", "pydicom"}  # imported inside the functions that need them
# run the runner with torch and MONAI made unimportable: what a Jetson Nano has. The kit's folder brings its own
# jnet/ (processing + deploy.runner, empty __init__s); the repository's jnet would import torch and fail here.
NO_TORCH = "import runpy, sys\nfor m in ('torch', 'monai'): sys.modules[m] = None\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')"

# (bundle, slice size, slices): down- and up-sampling to 256, BraTS pad and crop, a permuted in-plane affine
CASES = [
    ("prostate_mri_lowres_16", (300, 272), 5),
    ("prostate_mri_lowres_128", (128, 160), 4),
    ("brats_mri_lowres_32", (240, 240), 4),
    ("brats_mri_lowres_16", (272, 262), 3),
    ("brats_mri_lowres_64", (241, 235), 3),  # an odd square side below 256: padded 7 before, 8 after
]


def write_volume(path, bundle, size, depth, seed=0, permute=True):
    """A synthetic volume of the bundle's dataset; ``permute`` swaps the in-plane axes of the affine (LAS-like
    data stored as ALS), so the reorientation to RAS permutes axes, not only flips them."""
    rng = np.random.default_rng(seed)
    if bundle.startswith("prostate"):
        case = make_prostate_case(rng, slice_sizes=(size,), num_slices=(depth, depth))
    else:
        case = make_brats_case(rng, size=size, num_slices=(depth, depth))
    affine = case.affine.copy()
    if permute:
        affine[:, [0, 1]] = affine[:, [1, 0]]
    nib.save(nib.Nifti1Image(case.image, affine), path)
    return path


def run_runner(*args):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True, timeout=300)


def tree_bytes(folder):
    """Every file below ``folder`` (the kit's runner is a folder) as ``{relative path: content}``."""
    return {
        os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(folder) for f in files
    }


def load_mask(path):
    image = nib.load(path)
    return np.asanyarray(image.dataobj), image.affine


def balance_final_bias(network, slices):
    """Shift the last per-class bias so each class's median logit on ``slices`` is 0: random or briefly trained
    weights then give masks with every class and many boundaries (a hard case for agreement), not a constant."""
    num_classes = network(slices[:1]).shape[1]
    name = [k for k, v in network.state_dict().items() if k.endswith("bias") and tuple(v.shape) == (num_classes,)][-1]
    with torch.no_grad():
        medians = network(slices).transpose(0, 1).reshape(num_classes, -1).median(dim=1).values
        network.get_parameter(name).sub_(medians)
    return network


# ------------------------------------------------------------------------------------------------ the file itself
def _absolute_imports(nodes):
    names = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.level == 0}


@pytest.mark.parametrize("relative", sorted(RUNNER_SOURCES))
def test_runner_is_python36_code_with_numpy_and_nibabel_only(relative):
    tree = ast.parse(open(RUNNER_SOURCES[relative]).read(), feature_version=(3, 6))  # no walrus, match, ...
    top_level = _absolute_imports(tree.body)
    own = {name for name in top_level if name.split(".")[0] == "jnet"}
    assert all(name.startswith(RUNNER_MODULES) for name in own)  # of jnet only the runner's own floor
    assert {name.split(".")[0] for name in top_level - own} <= STDLIB_OK | {"numpy", "nibabel"}  # no __future__, torch, monai
    nested = {name.split(".")[0] for name in _absolute_imports(ast.walk(tree)) - own}
    assert nested <= STDLIB_OK | OPTIONAL_OK | {"numpy", "nibabel"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)]  # str.format only: no f"{x=}" (3.8)
    annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.arg, ast.AnnAssign)) and n.annotation]
    annotations += [n.returns for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.returns]
    assert not annotations  # no PEP 585/604 hints to trip 3.6 at import


def test_runner_sources_import_numpy_and_nibabel_and_nothing_else_outside_the_standard_library():
    trees = [ast.parse(open(path).read()) for path in RUNNER_SOURCES.values()]
    third_party = {name.split(".")[0] for tree in trees for name in _absolute_imports(tree.body)} - STDLIB_OK - {"jnet"}
    assert third_party == {"numpy", "nibabel"}


# --------------------------------------------------------------------------- one implementation: the bundle calls it
SHARED_STEPS = {
    "orientations", "apply_orientation", "normalize", "pad_square", "to_grid", "resize_slices", "from_grid",
    "crop_square", "activate", "to_labels",
}  # fmt: skip


@pytest.mark.parametrize("bundle", ["prostate_mri_lowres_16", "brats_mri_lowres_32"])
def test_the_bundle_computes_its_processing_with_the_runners_functions(bundle, tmp_path, monkeypatch):
    """Every numpy step of the runner is called by the bundle's own inference.json (through jnet.transforms), and
    changing one of them changes the bundle's result: one implementation, nothing to drift."""
    path = write_volume(str(tmp_path / "case.nii.gz"), bundle, (200, 180), 3)
    parser = bundle_parser(os.path.join(BUNDLES, bundle), base="configs/inference.json")
    called = set()
    for name in SHARED_STEPS:
        def spy(*args, _name=name, _function=getattr(standalone, name), **kwargs):
            called.add(_name)
            return _function(*args, **kwargs)
        monkeypatch.setattr(standalone, name, spy)
    data = parser.get_parsed_content("preprocessing")({"image": path})
    data["pred"] = torch.randn(int(parser["num_classes"]), 256, 256, 3)
    labels = Compose(parser.get_parsed_content("postprocessing").transforms[:-1])(data)["pred"]
    assert called == SHARED_STEPS
    assert tuple(labels.shape) == (1, 200, 180, 3) and labels.dtype == torch.uint8

    monkeypatch.setattr(standalone, "normalize", lambda volume, *args: np.zeros(volume.shape, np.float32))
    zeros = parser.get_parsed_content("preprocessing")({"image": path})["image"]
    assert float(np.abs(np.asarray(zeros)).max()) == 0.0 != float(np.abs(np.asarray(data["image"])).max())


@pytest.mark.parametrize("bundle,size,depth", CASES, ids=[c[0] for c in CASES])
def test_runner_pipeline_composes_the_steps_as_the_bundle(bundle, size, depth, tmp_path):
    """The runner's own sequence (preprocess -> network -> postprocess -> orientation undone) equals the bundle's
    Compose + Invertd, step parameters from deploy.json: same order, same state carried between the steps."""
    path = write_volume(str(tmp_path / "case.nii.gz"), bundle, size, depth)
    parser = bundle_parser(os.path.join(BUNDLES, bundle), base="configs/inference.json")
    params = deploy_params(parser, bundle)
    data = parser.get_parsed_content("preprocessing")({"image": path})

    volume, affine = standalone.load_volume(path, params["in_channels"])
    ras, undo = standalone.reorient(volume, affine, params["axcodes"])
    slices, state = standalone.preprocess(ras, params)
    reference = np.asarray(data["image"]).transpose(3, 0, 1, 2)  # (D, C, r, r)
    assert slices.shape == reference.shape == (depth, params["in_channels"], params["input_size"], params["input_size"])
    assert np.array_equal(slices, reference)  # the same functions: bit-identical

    coarse = torch.randn(depth, params["num_classes"], 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    logits = torch.nn.functional.interpolate(coarse, size=(256, 256), mode="bilinear").numpy()
    data["pred"] = torch.as_tensor(logits.transpose(1, 2, 3, 0).copy())
    out = Compose(parser.get_parsed_content("postprocessing").transforms[:-1])(data)["pred"]  # all but SaveImaged
    expected = np.asarray(out)[0]
    mask = standalone.apply_orientation(standalone.postprocess(logits, state, params)[None], undo)[0]
    assert mask.shape == expected.shape == volume.shape[1:]
    assert np.allclose(out.affine.numpy(), affine)
    assert np.array_equal(mask, expected)
    values, counts = np.unique(mask, return_counts=True)
    assert len(values) >= 3 and counts.min() > 0.01 * mask.size  # a real mask, not one label


# ------------------------------------------------ the shared numpy steps against the MONAI transforms they replaced
def monai_reference_volume_transforms(bundle):
    """The MONAI pipeline the bundles used before their steps became the runner's functions (the sweep that
    produced the published scores ran it): Orientationd, NormalizeIntensityd, Pad, Resized / ResizeWithPadOrCropd."""
    from monai.transforms import EnsureTyped, LoadImaged, NormalizeIntensityd, Orientationd, Resized, ResizeWithPadOrCropd
    from monai.transforms import SpatialPadd

    keys = ["image", "label"]
    if bundle.startswith("brats"):
        grid = ResizeWithPadOrCropd(keys, spatial_size=(256, 256, -1))
    else:
        grid = Resized(keys, spatial_size=(256, 256, -1), mode=("trilinear", "nearest-exact"), anti_aliasing=(True, False))
    return lambda item: grid(SpatialPadd(keys, spatial_size=(max(*item[1]), max(*item[1]), -1))(  # centred square pad
        NormalizeIntensityd("image", channel_wise=True)(EnsureTyped("image", dtype=torch.float32)(
            Orientationd(keys, axcodes="RAS", labels=None)(LoadImaged(keys, ensure_channel_first=True, image_only=True)(item[0])))))
    )


@pytest.mark.parametrize("bundle,size,depth", CASES, ids=[c[0] for c in CASES])
def test_shared_steps_equal_the_monai_transforms_the_published_scores_used(bundle, size, depth, tmp_path):
    """The bundle's training grid (image and label) and low-resolution input from the shared numpy steps equal
    MONAI's own transforms: images to 1e-5, labels exactly, affines to 1e-6 - so the sweep's scores, measured
    before the switch, describe the bundles as they are."""
    rng = np.random.default_rng(3)
    image_path = write_volume(str(tmp_path / "case.nii.gz"), bundle, size, depth)
    label = rng.integers(0, 3, size=nib.load(image_path).shape[:3]).astype(np.uint8)
    label_path = str(tmp_path / "label.nii.gz")
    nib.save(nib.Nifti1Image(label, nib.load(image_path).affine), label_path)
    parser = bundle_parser(os.path.join(BUNDLES, bundle))
    parser["label_transform"] = {"_target_": "Identityd", "keys": "label"}
    parser["label_values"] = [0, 1, 2]
    item = {"image": image_path, "label": label_path}
    ours = Compose(parser.get_parsed_content("volume_transforms"))(item)
    theirs = monai_reference_volume_transforms(bundle)((item, nib.load(image_path).shape[:2]))
    assert ours["image"].shape == theirs["image"].shape and ours["image"].shape[1:3] == (256, 256)
    assert np.abs(np.asarray(ours["image"]) - np.asarray(theirs["image"])).max() <= 1e-5
    assert np.array_equal(np.asarray(ours["label"]), np.asarray(theirs["label"]))
    for key in ("image", "label"):
        assert np.allclose(ours[key].affine.numpy(), theirs[key].affine.numpy(), atol=1e-6)
    size_in = int(parser["input_size"])
    low = LowResInputd("image", size=size_in, mode="area")(ours)["image"]
    reference = Resize((size_in, size_in, -1), mode="area")(theirs["image"])
    assert np.abs(np.asarray(low) - np.asarray(reference)).max() <= 1e-5
    assert np.allclose(low.affine.numpy(), reference.affine.numpy(), atol=1e-6)


@pytest.mark.parametrize("mode", ["area", "nearest", "nearest-exact", "bilinear"])
def test_lowres_modes_match_monai_resize(mode):
    image = torch.rand(2, 256, 256, 3, generator=torch.Generator().manual_seed(0))
    expected = Resize((32, 32, -1), mode=mode if mode != "bilinear" else "trilinear")(image).numpy()
    assert np.abs(standalone.resize_slices(image.numpy(), 32, mode) - expected).max() <= 1e-6


# ------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def prostate_kit(trained_root, tmp_path_factory):
    """The deployment kit of the trained tiny prostate_mri_lowres_16 (features=4), opset 13 as for TensorRT 8.2."""
    out = str(tmp_path_factory.mktemp("kit_16"))
    export_kit(BUNDLE_16, out, os.path.join(trained_root, "models", "model.pt"), opset=13, overrides={"features": 4})
    return out


def test_kit_holds_the_model_its_parameters_and_this_runner(prostate_kit):
    assert sorted(os.listdir(prostate_kit)) == ["build_engine.sh", "deploy.json", RUNNER_NAME, "model.onnx"]
    runner = os.path.join(prostate_kit, RUNNER_NAME)
    in_kit = sorted(os.path.relpath(os.path.join(d, f), runner) for d, _, files in os.walk(runner) for f in files if f.endswith(".py"))
    parents = [os.path.join("jnet", "__init__.py"), os.path.join("jnet", "deploy", "__init__.py")]
    assert in_kit == sorted(list(RUNNER_SOURCES) + parents + ["__main__.py"])
    for relative, source in RUNNER_SOURCES.items():  # byte copies of this repository's runner and processing
        assert open(os.path.join(runner, relative)).read() == open(source).read(), relative
    for parent in parents:  # the runner's part of jnet only: nothing that imports torch or MONAI
        assert "import" not in open(os.path.join(runner, parent)).read()
    params = standalone.load_params(os.path.join(prostate_kit, "deploy.json"))
    assert (params["in_channels"], params["num_classes"], params["input_size"], params["onnx_opset"]) == (2, 3, 16, 13)
    assert params["grid"] == {"type": "resize", "anti_aliasing": True} and params["activation"] == "softmax"
    assert params["onnx_max_abs_diff"] <= 1e-4


def _compare_with_bundle(bundle_dir, kit, bundle_root, inputs, out_bundle, out_runner, runner_args=(), **overrides):
    result = run_bundle(
        bundle_dir, ["configs/inference.json"], bundle_root=bundle_root, input_files=str(inputs),
        output_dir=out_bundle, num_workers=0, **overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), os.path.dirname(inputs[0]), "--output_dir", out_runner,
                        "--threads", "1", *runner_args)
    assert result.returncode == 0, result.stderr[-3000:]
    for path in inputs:
        name = os.path.basename(path).replace(".nii.gz", "_seg.nii.gz")
        expected, expected_affine = load_mask(os.path.join(out_bundle, name))
        mask, affine = load_mask(os.path.join(out_runner, name))
        assert mask.dtype == np.uint8 and mask.shape == expected.shape == nib.load(path).shape[:3]
        assert np.allclose(affine, expected_affine) and np.allclose(affine, nib.load(path).affine)
        assert (mask == expected).mean() >= 0.999
        values, counts = np.unique(mask, return_counts=True)
        assert len(values) >= 3 and counts.min() > 0.005 * mask.size, (name, values, counts)


def test_runner_masks_match_monai_bundle_run_prostate(prostate_kit, trained_root, tiny_dataset, tmp_path):
    """The trained tiny model, its final bias balanced, on the test volume of the tiny dataset (upsampled to
    256) and on a 300x272 volume with a permuted affine (anti-aliased downsampling, axes swapped)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz"))[0], inputs / "small.nii.gz")
    big = write_volume(str(inputs / "big.nii.gz"), "prostate", (300, 272), 5, seed=4)
    parser = bundle_parser(BUNDLE_16, base="configs/inference.json")
    parser["features"] = 4
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(os.path.join(trained_root, "models", "model.pt"), weights_only=True))
    volume, affine = standalone.load_volume(big, 2)
    slices, _ = standalone.preprocess(standalone.reorient(volume, affine)[0], standalone.load_params(os.path.join(prostate_kit, "deploy.json")))
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    torch.save(balance_final_bias(network, torch.as_tensor(slices)).state_dict(), root / "models" / "model.pt")
    kit = str(tmp_path / "kit")
    export_kit(BUNDLE_16, kit, str(root / "models" / "model.pt"), overrides={"features": 4})
    _compare_with_bundle(
        BUNDLE_16, kit, str(root), sorted(glob.glob(str(inputs / "*.nii.gz"))), str(tmp_path / "bundle"),
        str(tmp_path / "runner"), features=4,
    )  # fmt: skip


ALL_BUNDLES = [spec.name for spec in bundle_specs(os.path.join(BUNDLES, "..", "configs"))]


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_runner_masks_match_monai_bundle_run(name, tmp_path):
    """Every bundle, seeded random weights with the final bias balanced, on a 272x262 volume (BraTS: cropped to 256
    and padded back; prostate: anti-aliased resize to 256 and back)."""
    bundle = os.path.join(BUNDLES, name)
    dataset = "brats" if name.startswith("brats") else "prostate"
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = write_volume(str(inputs / "case.nii.gz"), dataset, (272, 262), 4, seed=5)
    root, kit, _ = _balanced_kit(bundle, path, tmp_path)
    _compare_with_bundle(bundle, kit, str(root), [path], str(tmp_path / "bundle"), str(tmp_path / "runner"))


def _balanced_kit(bundle, path, tmp_path, input_size=None):
    """Seeded weights with the final bias balanced on ``path``'s slices (at ``input_size``, default the bundle's) in
    ``tmp_path/root/models/model.pt``, and the kit exported from them: (root, kit folder, the kit's files)."""
    parser = bundle_parser(bundle, base="configs/inference.json")
    if input_size is not None:
        parser["input_size"] = input_size
    params = deploy_params(parser, os.path.basename(bundle))
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    volume, affine = standalone.load_volume(path, params["in_channels"])
    slices, _ = standalone.preprocess(standalone.reorient(volume, affine)[0], params)
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    torch.save(balance_final_bias(network, torch.as_tensor(slices)).state_dict(), root / "models" / "model.pt")
    kit = str(tmp_path / "kit")
    return root, kit, export_kit(bundle, kit, str(root / "models" / "model.pt"))


def test_the_any_size_kit_holds_every_size_and_the_runner_runs_the_one_asked_for(tmp_path):
    """The kit of prostate_mri_lowres_any: one ONNX file per size from the one weights file (each checked against
    PyTorch), deploy.json lists them; the runner's --input_size 16 runs model_16.onnx and writes the masks that
    `monai.bundle run inference.json --input_size 16` writes; a size the kit lacks is one ERROR line naming its sizes."""
    import json

    bundle = os.path.join(BUNDLES, "prostate_mri_lowres_any")
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = write_volume(str(inputs / "case.nii.gz"), "prostate", (272, 262), 4, seed=5)
    root, kit, files = _balanced_kit(bundle, path, tmp_path, input_size=16)
    deployed = json.load(open(os.path.join(kit, "deploy.json")))
    assert deployed["input_size"] == 32
    assert deployed["input_sizes"] == {"16": "model_16.onnx", "32": "model.onnx", "64": "model_64.onnx", "128": "model_128.onnx"}
    assert set(deployed["onnx_max_abs_diff_per_size"]) == {"16", "32", "64", "128"} and deployed["onnx_max_abs_diff"] <= 1e-4
    assert {os.path.basename(f) for f in files.values()} >= {"model.onnx", "model_16.onnx", "model_64.onnx", "model_128.onnx"}
    script = open(os.path.join(kit, "build_engine.sh")).read()
    assert all(f"--onnx={name}" in script and f"--saveEngine={name[:-5]}.engine" in script for name in deployed["input_sizes"].values())
    assert "image:32x2x16x16" in script and "image:32x2x128x128" in script
    _compare_with_bundle(bundle, kit, str(root), [path], str(tmp_path / "bundle"), str(tmp_path / "runner"),
                         runner_args=("--input_size", "16"), input_size=16)
    result = run_runner(os.path.join(kit, RUNNER_NAME), os.path.join(kit, "model.onnx"), path, "--input_size", "48")
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"ERROR: {os.path.join(kit, 'deploy.json')}: this kit serves input size(s) 16, 32, 64, 128, not 48 (the sizes of its bundle)."]


def test_a_per_size_kit_refuses_another_input_size(prostate_kit, tiny_dataset):
    image = glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz"))[0]
    result = run_runner(os.path.join(prostate_kit, RUNNER_NAME), os.path.join(prostate_kit, "model.onnx"), image, "--input_size", "32")
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"ERROR: {os.path.join(prostate_kit, 'deploy.json')}: this kit serves input size(s) 16, not 32 (exported from a per-size bundle)."]


def test_runner_on_python36_gives_the_same_masks(prostate_kit, tiny_dataset, tmp_path):
    """The Jetson Nano's Python stack (tests/envs.py ``py36``: Python 3.6, numpy 1.19, nibabel 3.2, ONNX Runtime 1.10)."""
    reason = ENVS["py36"].skip_reason()
    if reason:
        pytest.skip(reason)
    python36 = str(ENVS["py36"].python())
    version = subprocess.run([python36, "-c", "import sys, onnxruntime; print(sys.version_info[:2], onnxruntime.__version__)"], capture_output=True, text=True).stdout
    assert version.strip() == f"(3, 6) {ENVS['py36'].pinned('onnxruntime')}"
    image = glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz"))[0]
    runner, model = os.path.join(prostate_kit, RUNNER_NAME), os.path.join(prostate_kit, "model.onnx")
    old = subprocess.run([python36, runner, model, image, "--output_dir", str(tmp_path / "py36")], capture_output=True, text=True)
    assert old.returncode == 0, old.stderr
    assert run_runner(runner, model, image, "--output_dir", tmp_path / "current").returncode == 0
    name = os.path.basename(image).replace(".nii.gz", "_seg.nii.gz")
    mask, affine = load_mask(tmp_path / "py36" / name)
    expected, expected_affine = load_mask(tmp_path / "current" / name)
    assert np.allclose(affine, expected_affine) and (mask == expected).mean() >= 0.999


# -------------------------------------------------------------------------------------------------- bad input
def test_runner_refuses_bad_input_with_one_clear_line(prostate_kit, tmp_path):
    runner, model = os.path.join(prostate_kit, RUNNER_NAME), os.path.join(prostate_kit, "model.onnx")
    one_channel = str(tmp_path / "t2_only.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((32, 32, 3), np.float32), np.eye(4)), one_channel)
    result = run_runner(runner, model, one_channel, "--output_dir", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip() == f"ERROR: {one_channel}: image has 1 channel(s), the model expects 2."
    assert not (tmp_path / "out").exists()

    not_a_model = tmp_path / "model.bin"
    not_a_model.write_bytes(b"\x00" * 64)
    shutil.copy(os.path.join(prostate_kit, "deploy.json"), tmp_path / "deploy.json")
    result = run_runner(runner, not_a_model, one_channel)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"ERROR: {not_a_model}: not a model this runner reads - expected an ONNX model (.onnx)")
    # the likeliest mistakes, with no deploy.json beside them: the bundle's weights, or the arguments swapped
    weights = tmp_path / "models" / "model.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"PK\x03\x04")
    for wrong in (weights, one_channel):
        result = run_runner(runner, wrong, model)
        assert result.returncode == 1 and result.stderr.startswith(f"ERROR: {wrong}: not a model this runner reads"), result.stderr

    broken_onnx = tmp_path / "broken.onnx"
    broken_onnx.write_text("not protobuf")
    result = run_runner(runner, broken_onnx, one_channel)
    assert result.returncode == 1 and result.stderr.startswith(f"ERROR: {broken_onnx}: not a valid ONNX model (")
    assert len(result.stderr.strip().splitlines()) == 1


def test_runner_on_a_folder_skips_bad_files_writes_the_good_ones_and_fails_at_the_end(prostate_kit, tiny_dataset, tmp_path):
    runner, model = os.path.join(prostate_kit, RUNNER_NAME), os.path.join(prostate_kit, "model.onnx")
    folder = tmp_path / "studies"
    folder.mkdir()
    good = sorted(glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz")))
    for path in good:
        shutil.copy(path, folder)
    nib.save(nib.Nifti1Image(np.ones((32, 32, 3), np.float32), np.eye(4)), str(folder / "a_t2_only.nii.gz"))
    (folder / "b_truncated.nii.gz").write_bytes(open(good[0], "rb").read()[:500])
    out = tmp_path / "out"
    result = run_runner(runner, model, folder, "--output_dir", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("ERROR: ")]  # a 1-epoch model may also warn of one-label masks
    assert all(line.startswith(("ERROR: ", "WARNING: ")) for line in lines), lines
    assert errors[0] == f"ERROR: {folder / 'a_t2_only.nii.gz'}: image has 1 channel(s), the model expects 2."
    assert errors[1].startswith(f"ERROR: {folder / 'b_truncated.nii.gz'}: cannot be read as NIfTI (")
    assert errors[2] == f"ERROR: 2 of {len(good) + 2} volumes failed and were skipped: a_t2_only.nii.gz, b_truncated.nii.gz"
    written = sorted(os.listdir(out))
    assert written == sorted(os.path.basename(p).replace(".nii.gz", "_seg.nii.gz") for p in good)  # no partial files
    for path in good:
        mask, affine = load_mask(out / os.path.basename(path).replace(".nii.gz", "_seg.nii.gz"))
        assert mask.shape == nib.load(path).shape[:3] and np.allclose(affine, nib.load(path).affine)


def test_engine_without_tensorrt_is_skipped_with_the_reason(prostate_kit, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is importable here: the engine path is tested by test_tensorrt_engine_matches_onnx")
    except ImportError:
        pass
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00" * 64)
    shutil.copy(os.path.join(prostate_kit, "deploy.json"), tmp_path / "deploy.json")
    result = run_runner(os.path.join(prostate_kit, RUNNER_NAME), engine, "--benchmark")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"ERROR: {engine}: skipped - the tensorrt Python package is not importable (")
    assert "onnxruntime" in result.stderr  # what to use instead


def test_runner_benchmark_reports_batch_1_and_batch_n(prostate_kit):
    result = run_runner(os.path.join(prostate_kit, RUNNER_NAME), os.path.join(prostate_kit, "model.onnx"), "--benchmark", "--seconds", "0.2", "--batch_size", "8", "--threads", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["batch 1", "batch 8"]
    assert all(float(line.split(":")[2].split()[0]) > 0 for line in lines)


# ------------------------------------------------------------------------------------------------------ trtexec
def test_trtexec_commands_in_the_verb_and_the_kit_script(prostate_kit, capsys):
    trtexec(prostate_kit, max_batch=16)
    lines = capsys.readouterr().out.strip().splitlines()
    onnx, engine = os.path.join(prostate_kit, "model.onnx"), os.path.join(prostate_kit, "model.engine")
    assert lines[0].split() == [
        "trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", "--minShapes=image:1x2x16x16",
        "--optShapes=image:16x2x16x16", "--maxShapes=image:16x2x16x16", "--fp16", "--workspace=1024",
    ]  # fmt: skip  (TensorRT 8.2, JetPack 4.6: the default)
    assert lines[1].split() == ["trtexec", f"--loadEngine={engine}", "--shapes=image:1x2x16x16"]
    trtexec(prostate_kit, max_batch=16, tensorrt="10.3")
    assert capsys.readouterr().out.splitlines()[0].endswith("--fp16 --memPoolSize=workspace:1024")  # 10 has no --workspace
    script = open(os.path.join(prostate_kit, "build_engine.sh")).read()
    assert '"$TRTEXEC" --onnx=model.onnx --saveEngine=model.engine --minShapes=image:1x2x16x16' in script
    assert '--maxShapes=image:32x2x16x16 --fp16 "$WORKSPACE"' in script  # the kit's default max batch
    assert 'grep -q memPoolSize; then WORKSPACE="--memPoolSize=workspace:1024"; else WORKSPACE="--workspace=1024"; fi' in script


def test_the_kit_script_keeps_each_measurement_and_the_verb_records_it(prostate_kit, tmp_path):
    """build_engine.sh run with a stand-in trtexec (prints a TensorRT 8.x performance summary): each measurement's
    output lands in trtexec_b<batch>.log, and `jnet trtexec --record --logs` turns them into the measured row's JSON
    (the call's own latency, not the H2D/D2H lines)."""
    import json

    kit = tmp_path / "kit"
    shutil.copytree(prostate_kit, kit)
    fake = tmp_path / "trtexec"
    fake.write_text(
        f"#!/bin/sh\necho \"$*\" >> {tmp_path / 'calls.log'}\ncase \"$*\" in *image:32x*) q=50;; *) q=400;; esac\n"
        "echo \"[I] === Performance summary ===\"\necho \"[I] Throughput: $q qps\"\n"
        "echo \"[I] Latency: min = 2.3 ms, max = 2.9 ms, mean = 2.45 ms, median = 2.4 ms\"\n"
        "echo \"[I] End-to-End Host Latency: min = 2.5 ms, max = 3.1 ms, mean = 2.7 ms\"\n"
        "echo \"[I] D2H Latency: min = 0.004 ms, max = 0.01 ms, mean = 0.0045 ms\"\n"
    )
    fake.chmod(0o755)
    result = subprocess.run(["sh", str(kit / "build_engine.sh")], env={**os.environ, "TRTEXEC": str(fake)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Throughput: 400 qps" in (kit / "trtexec_b1.log").read_text() and "Throughput: 50 qps" in (kit / "trtexec_b32.log").read_text()
    calls = (tmp_path / "calls.log").read_text().splitlines()  # --help (no memPoolSize in it), build, two measurements
    assert calls[0] == "--help" and calls[1].endswith("--fp16 --workspace=1024") and len(calls) == 4
    record = tmp_path / "nano_16.json"
    trtexec(str(kit), record=str(record), device="Jetson Nano 4GB, JetPack 4.6.1", logs=[str(kit / "trtexec_b1.log"), str(kit / "trtexec_b32.log")])
    content = json.loads(record.read_text())
    assert content["bundle"] == "prostate_mri_lowres_16" and content["device"] == "Jetson Nano 4GB, JetPack 4.6.1"
    assert content["measured"] == {"1": {"images_per_s": 400.0, "latency_ms": 2.45}, "32": {"images_per_s": 1600.0, "latency_ms": 2.45}}
    with pytest.raises(InputError, match="--record needs --device"):
        trtexec(str(kit), record=str(record), logs=[str(kit / "trtexec_b1.log"), str(kit / "trtexec_b32.log")])


def test_trtexec_on_a_folder_that_is_not_a_kit(tmp_path):
    with pytest.raises(InputError, match=r"deploy.json: no such file; KIT_DIR must be a folder written by `python -m jnet export`\.$"):
        trtexec(str(tmp_path))


@pytest.mark.skipif(shutil.which("trtexec") is not None or os.path.exists("/usr/src/tensorrt/bin/trtexec"), reason="trtexec exists here")
def test_trtexec_run_without_trtexec_says_where_it_comes_from(prostate_kit):
    with pytest.raises(InputError, match="trtexec not found .* it ships with TensorRT"):
        trtexec(prostate_kit, run=True)


def test_build_engine_script_without_trtexec_is_one_clear_line(prostate_kit, tmp_path):
    for missing in (str(tmp_path / "no" / "trtexec"), str(tmp_path)):  # no such file; a folder (not a program)
        env = {**os.environ, "TRTEXEC": missing}
        result = subprocess.run(["sh", os.path.join(prostate_kit, "build_engine.sh")], capture_output=True, text=True, env=env)
        assert result.returncode == 1
        assert result.stderr.strip() == f"ERROR: {missing}: trtexec not found - it ships with TensorRT (JetPack on a Jetson); set TRTEXEC=/path/to/trtexec."
    assert not os.path.exists(os.path.join(prostate_kit, "model.engine"))


def test_export_without_the_export_extra_or_failing_its_check_leaves_the_kit_folder_as_it_was(prostate_kit, trained_root, tmp_path, monkeypatch):
    import importlib.util

    from jnet.deploy import kit

    weights = os.path.join(trained_root, "models", "model.pt")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a))
    with pytest.raises(InputError, match=r"^the export needs onnxruntime \(not installed\): pip install onnx onnxruntime"):
        export_kit(BUNDLE_16, str(tmp_path / "new_kit"), weights, overrides={"features": 4})
    assert not (tmp_path / "new_kit").exists()
    monkeypatch.undo()

    old_kit = tmp_path / "old_kit"
    shutil.copytree(prostate_kit, old_kit)
    before = tree_bytes(old_kit)

    def parity_fails(*args):
        raise RuntimeError("ONNX Runtime differs from PyTorch")

    monkeypatch.setattr(kit, "_check_parity", parity_fails)
    with pytest.raises(RuntimeError, match="differs"):
        export_kit(BUNDLE_16, str(old_kit), weights, opset=17, overrides={"features": 4})
    assert tree_bytes(old_kit) == before  # opset 13 kit untouched
    assert sorted(os.listdir(tmp_path)) == ["old_kit"]  # no staging folder left behind
    monkeypatch.undo()
    (old_kit / "model.engine").write_bytes(b"built from the old model.onnx")
    export_kit(BUNDLE_16, str(old_kit), weights, opset=17, overrides={"features": 4})
    assert sorted(os.listdir(old_kit)) == ["build_engine.sh", "deploy.json", RUNNER_NAME, "model.onnx"]  # stale engine gone


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: a TensorRT engine cannot be built or run here")
def test_tensorrt_engine_matches_onnx(prostate_kit, tiny_dataset, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install -e \".[tensorrt]\")")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    onnx_parser = trt.OnnxParser(network, logger)
    assert onnx_parser.parse(open(os.path.join(prostate_kit, "model.onnx"), "rb").read())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, 2, 16, 16), (8, 2, 16, 16), (8, 2, 16, 16))
    config.add_optimization_profile(profile)
    engine = tmp_path / "model.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    shutil.copy(os.path.join(prostate_kit, "deploy.json"), tmp_path / "deploy.json")
    image = glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz"))[0]
    runner = os.path.join(prostate_kit, RUNNER_NAME)
    for model, out in ((engine, tmp_path / "trt"), (os.path.join(prostate_kit, "model.onnx"), tmp_path / "ort")):
        result = subprocess.run([sys.executable, runner, str(model), image, "--output_dir", str(out)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    name = os.path.basename(image).replace(".nii.gz", "_seg.nii.gz")
    assert (load_mask(tmp_path / "trt" / name)[0] == load_mask(tmp_path / "ort" / name)[0]).mean() >= 0.999


def test_runner_warns_when_a_mask_is_one_label_everywhere(prostate_kit, tiny_dataset, tmp_path, capsys):
    """The same warning as the bundle's (jnet.processing.uniform_mask_warning), from a model whose logits always
    favour background; the mask is still written."""
    from jnet.deploy.runner.volumes import segment_file

    class Background:
        max_batch = None

        def run(self, batch):
            logits = np.zeros((batch.shape[0], 3, 256, 256), np.float32)
            logits[:, 0] = 10.0
            return logits

    params = standalone.load_params(os.path.join(prostate_kit, "deploy.json"))
    image = sorted(glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz")))[0]
    out = segment_file(Background(), image, params, str(tmp_path))
    assert f"WARNING: {image}: every voxel of the mask is label 0" in capsys.readouterr().err
    assert set(np.unique(load_mask(out)[0])) == {0}
    assert standalone.uniform_mask_warning("x.nii.gz", np.array([[0, 1]])) is None


def test_runner_without_nibabel_says_what_to_install(prostate_kit):
    block = "import runpy, sys\nsys.modules['nibabel'] = None\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", block, os.path.join(prostate_kit, RUNNER_NAME), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "ERROR: the runner needs numpy and nibabel (import of nibabel halted; None in sys.modules); pip3 install numpy nibabel onnxruntime."


def test_the_runner_picks_the_kit_file_of_the_size_asked_for_or_named():
    from jnet.processing import model_for_size, model_input_size

    params = {"input_size": 32, "input_sizes": {"16": "model_16.onnx", "32": "model.onnx", "64": "model_64.onnx"}}
    assert model_input_size("kit/model_16.onnx", params) == 16 and model_input_size("kit/model.engine", params) == 32
    assert model_input_size("kit/mine.onnx", params) is None and model_input_size("kit/model.onnx", {"input_size": 16}) is None
    assert model_for_size("kit/model.onnx", params, 16) == os.path.join("kit", "model_16.onnx")
    assert model_for_size("kit/model_64.engine", params, 32) == os.path.join("kit", "model.engine")  # engines by the same names
    assert model_for_size("kit/model_16.onnx", params, None) == "kit/model_16.onnx"  # no --input_size: the file named runs
    assert model_for_size("kit/mine.onnx", params, 16) == "kit/mine.onnx"  # not one of the kit's names: as given
