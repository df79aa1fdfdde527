"""MONAI's own bundle checks, for every generated bundle (in-process: the same functions `python -m monai.bundle`
calls), plus the metadata schema."""

import json
import copy
import os
import shutil

import jsonschema
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, load, verify_net_in_out

from conftest import BUNDLES, REPO
from jnet.bundles.parse import bundle_network
from jnet.bundles.matrix import bundle_specs

SPECS = list(bundle_specs(os.path.join(REPO, "configs")))
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_metadata_matches_the_schema(spec):
    schema = json.load(open(os.path.join(REPO, "tests", "metadata_schema.json")))
    meta = json.load(open(os.path.join(BUNDLES, spec.name, "configs", "metadata.json")))
    jsonschema.validate(meta, schema)
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == spec.profile["config"]["in_channels"]


SUITE_SCHEMA = os.path.join(REPO, "tests", "metadata_schema.json")
# MONAI's published schema (the metadata's "schema" URL, MONAI-extra-test-data 0.8.1) cannot be downloaded here; where
# a copy has been fetched, point JNET_MONAI_META_SCHEMA at it and the same check runs against it as well
OFFICIAL_SCHEMA = os.environ.get("JNET_MONAI_META_SCHEMA")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("schema", ["suite", "official"])
def test_monai_verify_metadata(spec, schema, tmp_path):
    """MONAI's own ``verify_metadata`` (what the model zoo's CI runs) on every bundle. It downloads the schema named
    in the metadata unless ``filepath`` exists: offline it validates against the suite's schema (the official
    schema's required keys and types, and stricter: tests/metadata_schema.json); with ``JNET_MONAI_META_SCHEMA``
    also against MONAI's published file."""
    from monai.bundle import verify_metadata

    if schema == "official" and not (OFFICIAL_SCHEMA and os.path.isfile(OFFICIAL_SCHEMA)):
        pytest.skip("MONAI's published meta_schema_20240725.json is not reachable offline: set JNET_MONAI_META_SCHEMA to a downloaded copy")
    meta_file = os.path.join(BUNDLES, spec.name, "configs", "metadata.json")
    verify_metadata(meta_file=meta_file, filepath=SUITE_SCHEMA if schema == "suite" else OFFICIAL_SCHEMA)
    broken = json.load(open(meta_file))
    del broken["network_data_format"]["inputs"]["image"]["value_range"]  # required by the official schema too
    json.dump(broken, open(tmp_path / "metadata.json", "w"))
    with pytest.raises(ValueError, match="value_range"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=SUITE_SCHEMA if schema == "suite" else OFFICIAL_SCHEMA)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_verify_net_in_out_and_the_256_output(spec):
    bundle = os.path.join(BUNDLES, spec.name)
    verify_net_in_out(
        net_id="network_def",
        meta_file=os.path.join(bundle, "configs", "metadata.json"),
        config_file=os.path.join(bundle, "configs", "train.json"),
        bundle_root=bundle,
    )
    network = bundle_network(bundle).eval()  # verify_net_in_out checks channels and dtype only
    with torch.no_grad():
        out = network(torch.randn(2, spec.profile["config"]["in_channels"], spec.input_size, spec.input_size))
    assert tuple(out.shape) == (2, len(spec.profile["output_channels"]), 256, 256)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_ckpt_export_to_torchscript_loads_with_monai_bundle_load(spec, tmp_path):
    bundle = str(tmp_path / spec.name)
    shutil.copytree(os.path.join(BUNDLES, spec.name), bundle, ignore=shutil.ignore_patterns("models", "eval"))
    os.makedirs(os.path.join(bundle, "models"))
    network = bundle_network(bundle).eval()
    torch.save(network.state_dict(), os.path.join(bundle, "models", "model.pt"))
    ckpt_export(
        net_id="network_def",
        filepath=os.path.join(bundle, "models", "model.ts"),
        ckpt_file=os.path.join(bundle, "models", "model.pt"),
        meta_file=os.path.join(bundle, "configs", "metadata.json"),
        config_file=os.path.join(bundle, "configs", "train.json"),
        bundle_root=bundle,
    )
    loaded = load(spec.name, bundle_dir=str(tmp_path), load_ts_module=True)
    scripted = loaded[0] if isinstance(loaded, tuple) else loaded
    x = torch.randn(1, spec.profile["config"]["in_channels"], spec.input_size, spec.input_size)
    with torch.no_grad():
        assert torch.allclose(scripted(x), network(x), atol=1e-4)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("workflow_type", ["train", "infer"])
def test_config_workflow_properties_are_complete(spec, workflow_type, tiny_dataset, tiny_brats_decathlon, tmp_path):
    bundle = os.path.join(BUNDLES, spec.name)
    config = "train.json" if workflow_type == "train" else "inference.json"
    workflow = ConfigWorkflow(
        config_file=os.path.join(bundle, "configs", config),
        meta_file=os.path.join(bundle, "configs", "metadata.json"),
        logging_file=os.path.join(bundle, "configs", "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(tmp_path),  # where models/ and eval/ would go: never inside the repository
        dataset_dir=tiny_dataset if spec.dataset == "prostate" else tiny_brats_decathlon,
        num_folds=3,
        features=4,
    )
    workflow.initialize()
    assert workflow.check_properties() == []


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_inference_trt_override_parses_and_merges(spec):
    from monai.bundle import ConfigParser

    bundle = os.path.join(BUNDLES, spec.name)
    parser = ConfigParser()
    parser.read_config([os.path.join(bundle, "configs", "inference.json"), os.path.join(bundle, "configs", "inference_trt.json")])
    assert parser["network"].startswith("$trt_compile(@network_def")
    assert parser["evaluator"]["network"] == "@network"  # the evaluator runs the TensorRT-compiled network
    assert parser["trt_args"]["dynamic_batchsize"] == [1, 16, 32]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["prostate_mri_lowres_16", "brats_mri_lowres_128"])
def test_trt_compile_onnx_step_runs_on_cpu_with_the_bundles_export_args(name, tmp_path):
    """``trt_compile`` first exports the network to ONNX through MONAI's ``convert_to_onnx`` with ``trt_args``'
    ``export_args``, then builds the engine (which needs CUDA). The ONNX step runs here as TrtCompiler calls it (after
    its ``add_casts_around_norms``, which wraps every norm layer in float32 casts): with torch >= 2.9 and no
    ``dynamo: false`` it would pick the dynamo exporter and fail without ``onnxscript``."""
    import onnxruntime as ort
    from monai.bundle import ConfigParser
    from monai.networks.utils import add_casts_around_norms, convert_to_onnx

    bundle = os.path.join(BUNDLES, name)
    parser = ConfigParser()
    parser.read_config([os.path.join(bundle, "configs", "inference.json"), os.path.join(bundle, "configs", "inference_trt.json")])
    spec = next(s for s in SPECS if s.name == name)
    torch.manual_seed(0)
    network = bundle_network(bundle).eval()
    x = torch.randn(2, spec.profile["config"]["in_channels"], spec.input_size, spec.input_size)
    path = str(tmp_path / "model.onnx")
    export_args = dict(parser["trt_args"]["export_args"])
    with torch.no_grad():
        expected = network(x).numpy()
    exported = add_casts_around_norms(copy.deepcopy(network))
    assert sum(type(m).__name__ == "CastToFloat" for m in exported.modules()) >= 5  # the backbone's norms, wrapped
    convert_to_onnx(exported, x, filename=path, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}}, **export_args)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert abs(session.run(None, {"x": x.numpy()})[0] - expected).max() <= 1e-4


TRT_HELPERS = (("tensorrt", "tensorrt"), ("polygraphy", "polygraphy"), ("cuda-python", "cuda"))  # what trt_compile needs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the TensorRT path cannot run here")
def test_inference_trt_runs_where_cuda_and_tensorrt_exist(tiny_dataset, trained_root, tmp_path):
    """Without any one of TensorRT, polygraphy or cuda-python, MONAI's ``trt_compile`` silently returns the PyTorch
    network: the test then skips naming what is missing (it would compare eager with eager). With them, the engine
    ``models/model.pt.plan`` - what docs/jetson.md tells users to look for - must be built by this run."""
    import importlib.util

    missing = [package for package, module in TRT_HELPERS if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"trt_compile would fall back to PyTorch: {', '.join(missing)} not installed (pip install -e \".[tensorrt]\")")
    from conftest import BUNDLE_16, TINY_OVERRIDES, run_bundle

    plan = os.path.join(trained_root, "models", "model.pt.plan")
    if os.path.exists(plan):
        os.remove(plan)
    out = str(tmp_path / "trt")
    result = run_bundle(
        BUNDLE_16, ["configs/inference.json", "configs/inference_trt.json"], bundle_root=trained_root,
        dataset_dir=tiny_dataset, output_dir=out, **TINY_OVERRIDES,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # trt_compile builds the plan on the first forward and runs the engine (fallback off: a failed build raises)
    assert os.path.isfile(plan) and os.path.getsize(plan) > 0, f"{plan} was not built: inference did not use TensorRT"
    eager = str(tmp_path / "eager")
    result = run_bundle(BUNDLE_16, ["configs/inference.json"], bundle_root=trained_root, dataset_dir=tiny_dataset, output_dir=eager, **TINY_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    import nibabel as nib
    import numpy as np

    names = sorted(os.listdir(eager))
    assert names and sorted(os.listdir(out)) == names
    for name in names:  # fp16 engine vs fp32 eager: the label maps agree on (almost) every voxel
        trt_mask, eager_mask = (nib.load(os.path.join(d, name)) for d in (out, eager))
        np.testing.assert_allclose(trt_mask.affine, eager_mask.affine)
        assert (np.asarray(trt_mask.dataobj) == np.asarray(eager_mask.dataobj)).mean() >= 0.999
