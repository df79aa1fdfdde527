import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from jnet.tools.bench.jetson import DEVICES, SCENARIOS, GraphCost, batch_seconds, estimate, graph_cost
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


def _hand_made_graph():
    """x (1, 1, 8, 8) -> Conv 3x3 (1 -> 4, pad 1) -> Relu -> MaxPool 2x2 -> Conv 1x1 (4 -> 2) -> y (1, 2, 4, 4), plus
    a shape-only branch (Shape -> Reshape of y to its own shape) that costs no kernel."""
    from onnx import TensorProto, helper, numpy_helper

    w1 = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),  # fused into the conv: its output's only use
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"]),
        helper.make_node("Shape", ["c2"], ["s"]),  # folded when the engine is built
        helper.make_node("Reshape", ["c2", "s"], ["y"]),  # a view
    ]
    graph = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_the_jetson_model_counts_a_hand_made_graph_and_gives_the_hand_computed_range():
    cost = graph_cost(_hand_made_graph())
    # MACs: conv1 4x8x8 outputs x 9 = 2304, conv2 2x4x4 outputs x 4 = 128; kernels: conv1+relu, pool, conv2 = 3
    # fp16 activations: conv1 reads x (64) and writes 256 (relu fused: counted once), pool 256 + 64, conv2 64 + 32
    assert (cost.macs, cost.kernels) == (2432, 3)
    assert cost.activation_bytes == 2 * (64 + 256 + 256 + 64 + 64 + 32) and cost.weight_bytes == 2 * (36 + 8)
    nano = DEVICES["jetson_nano"]
    for end, (share, bandwidth_share, floor) in {"optimistic": (0.70, 0.80, 10e-6), "pessimistic": (0.10, 0.50, 50e-6)}.items():
        compute = 2 * 2432 / (472e9 * share)
        memory = (2 * 736 + 88) / (25.6e9 * bandwidth_share)
        assert batch_seconds(cost, nano, SCENARIOS[("jetson_nano", end)], 1) == pytest.approx(max(compute, memory) + 3 * floor)
        assert estimate(cost)["jetson_nano"][end]["b1_images_per_s"] == pytest.approx(1 / (max(compute, memory) + 3 * floor))


def test_launch_floors_and_bandwidth_only_slow_the_compute_only_figure_down():
    for cost in (GraphCost(13_800_000, 86, 1_200_000, 1_700_000), GraphCost(720_000_000, 86, 26_000_000, 1_700_000), GraphCost(5, 0, 0, 0)):
        result = estimate(cost)
        for device in DEVICES:
            entry = result[device]
            assert entry["optimistic"]["b1_images_per_s"] <= entry["compute_only_images_per_s"] * (1 + 1e-12)
            assert entry["pessimistic"]["b1_images_per_s"] <= entry["optimistic"]["b1_images_per_s"]
            assert entry["pessimistic"]["b32_images_per_s"] >= entry["pessimistic"]["b1_images_per_s"]  # floors amortised


def test_trtexec_output_is_read_into_images_per_s():
    from jnet.deploy.runner.trtexec import parse_trtexec_output

    text = ("[I] === Performance summary ===\n[I] Throughput: 812.5 qps\n"
            "[I] Latency: min = 1.1 ms, max = 1.9 ms, mean = 1.23 ms, median = 1.2 ms\n")
    assert parse_trtexec_output(text, 32) == {"images_per_s": 812.5 * 32, "latency_ms": 1.23}
    with pytest.raises(ValueError, match="no 'Throughput"):
        parse_trtexec_output("[E] engine could not be built", 1)


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
    assert head["inferer_batch"] == 32 and head["eager"]["images_per_s_inferer"] > 0  # slices_per_call(16)
    assert 1 < report["matmul_limit_gmacs"] < 10_000  # this CPU's measured fp32 MatMul G MAC/s
    for result in (head, plain):  # each figure as a share of that limit: images/s x MACs / limit
        for key, (runtime, figure) in figures.items():
            assert result["share_of_matmul_limit"][key] == pytest.approx(result[runtime][figure] * result["macs"] / (report["matmul_limit_gmacs"] * 1e9))
    for result in (head, plain):  # the latency model of the exported graph
        assert result["jetson"]["cost"]["kernels"] > 40 and result["jetson"]["cost"]["macs"] > 10_000_000
        assert result["jetson"] == estimate(GraphCost(**result["jetson"]["cost"]))
    assert report["jetson_assumptions"]["scenarios"]["jetson_nano/pessimistic"]["kernel_floor_s"] == 50e-6

    table = render_bench_table(report)
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith(("| prostate_mri_lowres_16 | head |", "| prostate_mri_lowres_16 | bilinear |"))}
    assert set(rows) == {"head", "bilinear"}
    for variant, result in (("head", head), ("bilinear", plain)):
        cells = [c.strip() for c in rows[variant].strip("|").split("|")]
        nano = result["jetson"]["jetson_nano"]
        low, high = nano["pessimistic"]["b1_images_per_s"], nano["optimistic"]["b1_images_per_s"]
        assert cells[2] == f"{result['parameters']:,}" and cells[4] == f"{result['macs'] / 1e6:.1f}"
        assert cells[5] == f"{result['eager']['images_per_s_b1']:.0f}" and cells[8] == f"{result['onnxruntime']['images_per_s']:.0f}"
        assert cells[10] == f"{low:.0f}-{high:.0f}" + (f" ({under_nano_target(low)})" if low < NANO_TARGET else "")
        assert cells[12] == f"{result['share_of_matmul_limit']['eager_images_per_s']:.0%}"
        assert cells[13] == f"{result['share_of_matmul_limit']['onnxruntime_images_per_s']:.0%}"
    share_row = [line for line in table.splitlines() if line.startswith("| prostate_mri_lowres_16 | ") and line.split(" | ")[1].endswith("%")]
    assert len(share_row) == 1
    shares = [int(x) for x in re.findall(r"(\d+)%", share_row[0])]
    assert shares == [round(100 * head["share_of_bilinear_throughput"][k]) for k in SHARE_KEYS]
    assert under_nano_target(19.9) == "under 20" and under_nano_target(20.0) == ""


@pytest.mark.parametrize("bundle", ["prostate_mri_lowres_32", "brats_mri_lowres_64"])
def test_a_training_step_in_channels_last_equals_the_contiguous_one(bundle):
    """The bundles train with ``channels_last`` (faster on CPU): the bundle's own network, loss and optimizer from the
    same seed give the same first-step gradients and the same losses over three steps as the contiguous network, to
    float rounding. (Not the weights after Adam: its first steps move each weight by about the learning rate times
    the SIGN of its gradient, so a gradient within rounding of zero may step either way.)"""
    from jnet.tools.bench.training import training_step
    from jnet.tools.bundle_commands import repo_bundle

    runs = {}
    for channels_last in (False, True):
        step, batch, network = training_step(repo_bundle(bundle), channels_last)
        losses = [step()]
        conv = next(m for m in network.modules() if isinstance(m, nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        gradients = {name: p.grad.clone() for name, p in network.named_parameters()}
        losses += [step(), step()]
        runs[channels_last] = losses, batch, gradients
    (plain, batch, plain_grads), (fast, _, fast_grads) = runs[False], runs[True]
    assert batch == 16  # batch_size 4 x slices_per_volume 4
    assert plain[0] > 0.1 and plain[2] < plain[0]  # a real loss that training lowers
    assert fast == pytest.approx(plain, rel=1e-5)
    assert plain_grads.keys() == fast_grads.keys()
    flat_plain, flat_fast = (torch.cat([g[name].flatten() for name in plain_grads]) for g in (plain_grads, fast_grads))
    assert (flat_fast - flat_plain).norm() < 1e-3 * flat_plain.norm()
    largest = max(grad.norm() for grad in plain_grads.values())
    for name, grad in plain_grads.items():
        # each weight's gradient in the same direction (a wrong memory-format path gives an unrelated one); sums over
        # thousands of pixels through BatchNorm's mean subtraction cancel, so single entries agree to a few % only,
        # and gradients that are only border effects (biases ahead of a BatchNorm) are left to the global check
        if grad.norm() > 1e-3 * largest:
            assert torch.nn.functional.cosine_similarity(fast_grads[name].flatten(), grad.flatten(), dim=0) > 0.999, name


def test_bench_training_reports_every_per_size_bundle_in_both_memory_formats(tmp_path):
    import json
    import os
    import shutil

    from conftest import REPO
    from jnet.bundles.render import generate_bundles
    from jnet.tools.bench.training import MEMORY_FORMATS, bench_training, format_training_table

    configs = str(tmp_path / "configs")
    shutil.copytree(os.path.join(REPO, "configs"), configs)
    matrix = json.load(open(os.path.join(configs, "matrix.json")))
    json.dump({**matrix, "resolutions": [16], "datasets": ["prostate"]}, open(os.path.join(configs, "matrix.json"), "w"))
    generate_bundles(configs, str(tmp_path / "bundles"))
    report = bench_training(str(tmp_path / "bundles"), configs, budget_s=0.05)
    assert list(report["bundles"]) == ["prostate_mri_lowres_16"]  # the _any bundle's steps are the per-size ones
    entry = report["bundles"]["prostate_mri_lowres_16"]
    assert entry["batch"] == 16 and entry["input_size"] == 16
    assert all(entry[name] > 1 for name in MEMORY_FORMATS)
    row = [line for line in format_training_table(report).splitlines() if line.startswith("| prostate_mri_lowres_16 |")]
    assert row == [f"| prostate_mri_lowres_16 | 16 | {entry['contiguous']:.0f} | {entry['channels_last']:.0f} | "
                   f"{entry['channels_last'] / entry['contiguous']:.2f}x |"]


def test_bench_training_measures_an_earlier_checkout_in_the_same_rounds(tmp_path):
    """``before_repo``: the steps of another checkout's code and bundles run in a subprocess between this code's."""
    import json
    import os
    import shutil

    from conftest import REPO
    from jnet.bundles.render import generate_bundles
    from jnet.tools.bench.training import MEMORY_FORMATS, bench_training, format_training_table

    for name in ("now", "before"):  # two checkouts with one bundle each; the earlier one's jnet is a copy
        configs = str(tmp_path / name / "configs")
        shutil.copytree(os.path.join(REPO, "configs"), configs)
        matrix = json.load(open(os.path.join(configs, "matrix.json")))
        json.dump({**matrix, "resolutions": [16], "datasets": ["prostate"]}, open(os.path.join(configs, "matrix.json"), "w"))
        generate_bundles(configs, str(tmp_path / name / "bundles"))
    shutil.copytree(os.path.join(REPO, "jnet"), str(tmp_path / "before" / "jnet"))
    report = bench_training(str(tmp_path / "now" / "bundles"), str(tmp_path / "now" / "configs"), budget_s=0.05,
                            before_repo=str(tmp_path / "before"), rounds=1)
    before = report["before"]
    assert before["commit"] == "before" and "same 1 rounds" in before["how"]  # not a git checkout: its folder's name
    assert list(before["bundles"]) == ["prostate_mri_lowres_16"]
    assert all(before["bundles"]["prostate_mri_lowres_16"][name] > 1 for name in MEMORY_FORMATS)
    entry, old = report["bundles"]["prostate_mri_lowres_16"], max(before["bundles"]["prostate_mri_lowres_16"].values())
    row = [line for line in format_training_table(report).splitlines() if line.startswith("| prostate_mri_lowres_16 |")]
    assert row[0].endswith(f" {old:.0f} | {entry['channels_last'] / old:.2f}x |")
    with open(tmp_path / "before" / "jnet" / "__init__.py", "a") as f:  # the subprocess imports that checkout's jnet
        f.write("\nraise ImportError('the earlier checkout')\n")
    with pytest.raises(RuntimeError, match="training bench at .*before: ImportError: the earlier checkout"):
        bench_training(str(tmp_path / "now" / "bundles"), str(tmp_path / "now" / "configs"), budget_s=0.05,
                       before_repo=str(tmp_path / "before"), rounds=1)


def test_a_trtexec_record_becomes_a_measured_row_beside_the_estimates(tmp_path):
    from jnet.deploy.kit import write_trtexec_record
    from jnet.tools.bench.jetson import assumptions
    from jnet.tools.sweep.publish import _jetson_rows, _measured_records

    folder = tmp_path / "results" / "jetson_measured"
    folder.mkdir(parents=True)
    outputs = {1: "[I] Throughput: 400 qps\n[I] Latency: min = 2.3 ms, max = 2.9 ms, mean = 2.45 ms\n", 32: "[I] Throughput: 50 qps\n"}
    write_trtexec_record(str(folder / "nano_16.json"), {"bundle": "prostate_mri_lowres_16"}, "Jetson Nano 4GB, JetPack 4.6.1, nvpmodel 0",
                         True, outputs, [["trtexec", "--onnx=model.onnx"]])
    cost = GraphCost(13_800_000, 86, 1_200_000, 1_700_000)
    bench = {"machine": "test", "jetson_model": "the model", "jetson_assumptions": assumptions(),
             "bundles": {"prostate_mri_lowres_16": {"head": {"jetson": estimate(cost)}}}}
    rows = _jetson_rows(bench, _measured_records(str(tmp_path / "results")))
    assert "| prostate_mri_lowres_16 | Jetson Nano 4GB, JetPack 4.6.1, nvpmodel 0 | fp16 | 400 | 2.45 | 1600 (batch 32) |" in rows
    nano = estimate(cost)["jetson_nano"]
    estimate_row = [r for r in rows if r.startswith("| prostate_mri_lowres_16 | 13.8 | 86 |")]
    assert len(estimate_row) == 1 and f"| {nano['pessimistic']['b1_images_per_s']:.0f}-{nano['optimistic']['b1_images_per_s']:.0f} |" in estimate_row[0]
    assert any(r.startswith("| Jetson Nano: launch floor per kernel | 10 us | 50 us |") for r in rows)
    assert _jetson_rows(bench, [])[-1] == "(none yet: no figure here has been measured on a Jetson)"


def test_end_to_end_table_gives_the_ratio_without_imports_only_where_it_is_defined():
    """The table's 'without imports' ratio: (12.6 - 5.0) / (6.5 - 0.3) = 1.23x; left out when the runner's imports timed
    at least its whole run, or when the imports were not measured."""
    from jnet.tools.bench.end_to_end import EndToEnd, format_end_to_end_table

    def table(**kwargs):
        return format_end_to_end_table(EndToEnd("prostate_mri_lowres_32", 24, 419, 12.6, 6.5, 810.0, 440.0, 1.0, **kwargs))

    measured = table(bundle_imports_s=5.0, runner_imports_s=0.3)
    assert "Bundle / runner wall time: 1.94x (start-up included); without each program's imports" in measured
    assert measured.count("1.23x") == 1 and "| 5.0 s | 7.6 s |" in measured and "| 0.3 s | 6.2 s |" in measured
    for kwargs in ({"bundle_imports_s": 5.0, "runner_imports_s": 6.5}, {}):
        unmeasured = table(**kwargs)
        assert "without each program's imports" not in unmeasured and "1.94x (start-up included); the masks agree" in unmeasured
    rows = [line for line in table().splitlines() if line.startswith("|")]
    assert len({row.count("|") for row in rows}) == 1 and rows[-1].endswith("| - | - |")  # no imports: both cells empty


def test_end_to_end_runs_both_programs_on_the_same_volumes_and_writes_the_table(tmp_path):
    """python -m jnet bench_end_to_end on 2 small volumes: both programs measured (peak RSS of their own process,
    wall time from start-up), every mask written by both, the table and JSON written."""
    import json
    import os

    from jnet.tools.bench.end_to_end import bench_end_to_end, write_end_to_end_report

    result = bench_end_to_end(str(tmp_path), num_volumes=2, num_slices=(4, 5))
    assert result.volumes == 2 and 8 <= result.slices <= 10
    assert result.bundle_wall_s > 0.5 and result.runner_wall_s > 0.1  # both really ran (start-up alone takes longer)
    assert result.bundle_peak_mb > 100 and result.runner_peak_mb > 50
    assert sorted(os.listdir(tmp_path / "bundle_masks")) == sorted(os.listdir(tmp_path / "runner_masks")) != []
    assert result.masks_equal >= 0.999
    # the imports alone, in fresh interpreters: all of MONAI (and torch) against ONNX Runtime and numpy/nibabel
    # (no ratio of timings asserted: the wall times are single runs, the imports the fastest of 3, all under the load
    # of whatever else runs - a test of their order would fail by accident)
    assert 0 < result.runner_imports_s < result.bundle_imports_s
    table = write_end_to_end_report(result, str(tmp_path))
    assert f"| {result.bundle_imports_s:.1f} s | {result.bundle_wall_s - result.bundle_imports_s:.1f} s |" in table
    # the ratio without imports is printed exactly when it is defined (a tiny run on a loaded machine can time the
    # runner's imports at more than its whole run: then it is None and left out)
    after = result.after_imports_ratio
    assert ("without each program's imports" in table) == (after is not None)
    assert after is None or f"{after:.2f}x" in table
    assert "| standalone runner (ONNX Runtime) | 2 (" in table and json.load(open(tmp_path / "end_to_end.json"))["volumes"] == 2
