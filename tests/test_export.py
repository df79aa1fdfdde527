"""ONNX export of every bundle's eval-mode network and parity with PyTorch in ONNX Runtime (CPU)."""

import glob
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import BUNDLES, REPO
from jnet.bundles.parse import bundle_network, bundle_parser
from jnet.bundles.matrix import bundle_specs
from jnet.deploy.export import export_onnx

SPECS = list(bundle_specs(os.path.join(REPO, "configs")))


def _realistic_slices(spec, dataset_dir):
    """Slices of a synthetic volume through the bundle's own inference pre-processing: (D, C, r, r)."""
    parser = bundle_parser(os.path.join(BUNDLES, spec.name), base="configs/inference.json")
    image = sorted(glob.glob(os.path.join(dataset_dir, "imagesTs", "*.nii.gz")))[0]
    volume = parser.get_parsed_content("preprocessing")({"image": image})["image"]
    return torch.as_tensor(volume).permute(3, 0, 1, 2).float().contiguous()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("opset", [17, 13])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_onnx_export_parity(spec, opset, tiny_dataset, tiny_brats_decathlon, tmp_path):
    torch.manual_seed(0)
    network = bundle_network(os.path.join(BUNDLES, spec.name)).eval()  # seeded random weights
    channels = spec.profile["config"]["in_channels"]
    path = export_onnx(network, (1, channels, spec.input_size, spec.input_size), str(tmp_path / "model.onnx"), opset)
    slices = _realistic_slices(spec, tiny_dataset if spec.dataset == "prostate" else tiny_brats_decathlon)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"image": slices.numpy()})[0]
    with torch.no_grad():
        torch_out = network(slices).numpy()
    classes = len(spec.profile["output_channels"])
    assert onnx_out.shape == (len(slices), classes, 256, 256)
    assert [i.shape for i in session.get_inputs()] == [["batch", channels, spec.input_size, spec.input_size]]
    assert [o.shape for o in session.get_outputs()] == [["batch", classes, 256, 256]]  # declared: only N dynamic
    assert np.abs(onnx_out - torch_out).max() <= 1e-4
    assert (onnx_out.argmax(1) == torch_out.argmax(1)).mean() >= 0.999


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("bundle", ["prostate_mri_lowres_16", "brats_mri_lowres_128"])
def test_the_exported_graph_is_folded_for_tensorrt(tmp_path, bundle, opset):
    """No Constant nodes, and every Pad / Reshape / Resize takes initializer inputs (TensorRT 7/8's parsers assert
    ``inputs.at(1).is_weights()``); ONNX Runtime gives the eager logits from the folded file."""
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    from jnet.bundles.parse import bundle_parser
    from jnet.deploy.export import export_onnx
    from jnet.tools.bundle_commands import repo_bundle

    torch.manual_seed(0)
    parser = bundle_parser(repo_bundle(bundle), base="configs/inference.json")
    network = parser.get_parsed_content("network_def").eval()
    size, channels = int(parser["input_size"]), int(parser["in_channels"])
    path = export_onnx(network, (1, channels, size, size), str(tmp_path / "model.onnx"), opset=opset)
    graph = onnx.load(path).graph
    initializers = {init.name for init in graph.initializer}
    assert not [n for n in graph.node if n.op_type == "Constant"]
    shaped = [n for n in graph.node if n.op_type in ("Pad", "Reshape", "Resize")]
    assert shaped and all(name in initializers for n in shaped for name in n.input[1:] if name), [
        (n.op_type, [i for i in n.input[1:] if i not in initializers]) for n in shaped]
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        expected = network(x).numpy()
    (got,) = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
