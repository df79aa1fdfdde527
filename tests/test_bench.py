import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from jnet.tools.bench.jetson import estimate_images_per_s
from jnet.tools.bench.macs import count_macs, head_macs
from jnet.tools.bench.memory import peak_forward_memory
from jnet.deploy.export import export_onnx
from jnet.networks import JNet, UpscalingHead, elunet_for_input


def test_macs_of_a_single_conv_and_transposed_conv_match_a_hand_count():
    assert count_macs(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 10, 10)) == 10 * 10 * 8 * 3 * 9
    assert count_macs(nn.Conv2d(4, 4, 3, padding=1, groups=4), (2, 4, 6, 6)) == 2 * 6 * 6 * 4 * 1 * 9
    assert count_macs(nn.ConvTranspose2d(4, 6, 2, stride=2), (1, 4, 5, 5)) == 5 * 5 * 4 * 6 * 4


def test_head_macs_match_a_hand_count():
    # level k reads a 3 x (16 * 2**k)^2 map: a class-wise 2x2 transposed conv (4 MACs per input pixel), then a
    # class-wise 3x3 conv on the doubled map (9 MACs per output pixel, 4 output pixels per input pixel)
    pixels = sum(3 * (16 * 2**k) ** 2 for k in range(4))
    assert head_macs(UpscalingHead(3, 4), 1, 16, 16) == pixels * (4 + 4 * 9) == 2_611_200
    net = JNet(elunet_for_input(2, 3, 16, features=4), 3, levels=4, output_size=256)
    assert count_macs(net, (1, 2, 16, 16)) - count_macs(net.backbone, (1, 2, 16, 16)) == 2_611_200


def test_jetson_estimate_is_labelled_arithmetic():
    assert estimate_images_per_s(10_000_000, "jetson_nano") == pytest.approx(0.10 * 472e9 / 2e7)


def test_peak_memory_counts_at_least_the_output():
    peak = peak_forward_memory(nn.Upsample(scale_factor=4), torch.randn(8, 3, 64, 64))
    if peak is None:
        pytest.skip("glibc mallinfo2 is not available on this platform")
    assert peak >= 8 * 3 * 256 * 256 * 4


@pytest.mark.parametrize("opset", [17, 13])
@pytest.mark.parametrize("skip", [False, True])
def test_onnx_export_matches_pytorch(opset, skip, tmp_path):
    torch.manual_seed(0)
    net = JNet(elunet_for_input(2, 3, 16, features=4), 3, levels=4, output_size=256, head_skip=skip, head_init="default").eval()
    path = export_onnx(net, (1, 2, 16, 16), str(tmp_path / "net.onnx"), opset=opset)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = torch.randn(3, 2, 16, 16)  # a batch other than the exported one: the batch axis is dynamic
    onnx_out = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        torch_out = net(x).numpy()
    assert onnx_out.shape == (3, 3, 256, 256)
    assert np.abs(onnx_out - torch_out).max() <= 1e-4
    assert (onnx_out.argmax(1) == torch_out.argmax(1)).mean() >= 0.999


def test_fastest_of_rounds_keeps_each_figures_best_round_and_alternates():
    from jnet.tools.bench.speed import fastest_of_rounds

    order, rounds = [], {"a": iter([(10.0, 5.0), (30.0, 2.0), (20.0, 9.0)]), "b": iter([(1.0, 1.0)] * 3)}

    def measure(name):
        def call():
            order.append(name)
            rate, latency = next(rounds[name])
            return {"images_per_s": rate, "latency_ms": latency}
        return call

    best = fastest_of_rounds({"a": measure("a"), "b": measure("b")}, rounds=3)
    assert order == ["a", "b"] * 3  # alternating, so load that comes and goes hits both
    assert best["a"] == {"images_per_s": 30.0, "latency_ms": 2.0} and best["b"] == {"images_per_s": 1.0, "latency_ms": 1.0}


def test_bench_bundles_shares_table_and_jetson_column(tmp_path):
    """``python -m jnet bench`` on a one-resolution matrix: the shares are the head's figures over the bilinear
    network's, the table prints every figure of the report, the Jetson column is the estimate of the MACs."""
    import json
    import os
    import re
    import shutil

    from conftest import REPO
    from jnet.bundles.render import generate_bundles
    from jnet.tools.bench.bundles import NANO_TARGET, SHARE_KEYS, bench_bundles, under_nano_target
    from jnet.tools.bench.table import render_bench_table

    configs = str(tmp_path / "configs")
    shutil.copytree(os.path.join(REPO, "configs"), configs)
    matrix = json.load(open(os.path.join(configs, "matrix.json")))
    json.dump({**matrix, "resolutions": [16], "datasets": ["prostate"]}, open(os.path.join(configs, "matrix.json"), "w"))
    generate_bundles(configs, str(tmp_path / "bundles"))
    report = bench_bundles(configs, str(tmp_path / "bundles"), budget_s=0.05)
    assert list(report["bundles"]) == ["prostate_mri_lowres_16"]
    head, plain = report["bundles"]["prostate_mri_lowres_16"]["head"], report["bundles"]["prostate_mri_lowres_16"]["bilinear"]
    assert head["added_parameters"] == head["parameters"] - plain["parameters"] == 180  # 15 per class and level, 3 x 4
    assert head["macs"] - plain["macs"] == 2_611_200  # the head's hand count (test_head_macs_match_a_hand_count)
    figures = {"eager_images_per_s_b1": ("eager", "images_per_s_b1"), "eager_images_per_s": ("eager", "images_per_s"),
               "onnxruntime_images_per_s_b1": ("onnxruntime", "images_per_s_b1"), "onnxruntime_images_per_s": ("onnxruntime", "images_per_s")}
    assert set(SHARE_KEYS) == set(figures)
    for key, (runtime, figure) in figures.items():
        assert head[runtime][figure] > 0 and plain[runtime][figure] > 0
        assert head["share_of_bilinear_throughput"][key] == pytest.approx(head[runtime][figure] / plain[runtime][figure])
    for result in (head, plain):
        assert result["jetson_estimate_images_per_s"] == {d: estimate_images_per_s(result["macs"], d) for d in ("jetson_nano", "jetson_orin_nano")}

    table = render_bench_table(report)
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| prostate_mri_lowres_16 | ") and "%" not in line}
    assert set(rows) == {"head", "bilinear"}
    for variant, result in (("head", head), ("bilinear", plain)):
        cells = [c.strip() for c in rows[variant].strip("|").split("|")]
        nano = result["jetson_estimate_images_per_s"]["jetson_nano"]
        assert cells[2] == f"{result['parameters']:,}" and cells[4] == f"{result['macs'] / 1e6:.1f}"
        assert cells[5] == f"{result['eager']['images_per_s_b1']:.0f}" and cells[8] == f"{result['onnxruntime']['images_per_s']:.0f}"
        assert cells[10] == f"{nano:.0f}" + (f" ({under_nano_target(nano)})" if nano < NANO_TARGET else "")
    share_row = [line for line in table.splitlines() if line.startswith("| prostate_mri_lowres_16 | ") and "%" in line]
    assert len(share_row) == 1
    shares = [int(x) for x in re.findall(r"(\d+)%", share_row[0])]
    assert shares == [round(100 * head["share_of_bilinear_throughput"][k]) for k in SHARE_KEYS]
    assert under_nano_target(19.9) == "under 20" and under_nano_target(20.0) == ""
