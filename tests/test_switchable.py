"""The resolution-switchable J-Net (issue 16): one backbone and head for every input size."""

import pytest
import torch

from jnet.networks import ELUNet, JNet, SizeStatisticsBatchNorm2d, SizeSwitchedBatchNorm2d, SwitchableJNet, UpscalingHead

SIZES = (16, 32, 64, 128)
NORMS = [False, True, "stats"]  # shared norms, one norm per size, one set of statistics per size


def _network(per_size_norm: bool | str = False, seed: int = 0) -> SwitchableJNet:
    torch.manual_seed(seed)
    network = SwitchableJNet(ELUNet(2, 3, features=4, num_pools=4), 3, output_size=256, sizes=SIZES, per_size_norm=per_size_norm is True,
                             head_init="default", per_size_stats=per_size_norm == "stats")
    with torch.no_grad():  # BatchNorm statistics that differ from the defaults, per norm: the test can tell norms apart
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
            if isinstance(module, SizeStatisticsBatchNorm2d):
                module.running_means.uniform_(-0.5, 0.5)
                module.running_vars.uniform_(0.5, 2.0)
    return network


@pytest.mark.parametrize("per_size_norm", NORMS)
def test_every_size_gives_256_logits_in_eval_and_its_levels_in_training(per_size_norm):
    network = _network(per_size_norm)
    for size in SIZES:
        x = torch.randn(2, 2, size, size)
        network.eval()
        with torch.no_grad():
            assert tuple(network(x).shape) == (2, 3, 256, 256)
        network.train()
        levels = network(x)
        assert [tuple(t.shape[2:]) for t in levels] == [(s, s) for s in (256, 128, 64, 32, 16) if s >= size]


def test_an_unsupported_size_is_a_clear_error_naming_the_supported_ones():
    network = _network().eval()
    with pytest.raises(ValueError, match=r"input of 48x48: this network serves 16x16, 32x32, 64x64, 128x128 inputs"):
        network(torch.randn(1, 2, 48, 48))
    with pytest.raises(ValueError, match=r"output_size \(256\) / 2\*\*k"):
        SwitchableJNet(ELUNet(2, 3, features=4), 3, sizes=(16, 48))


@pytest.mark.parametrize("per_size_norm", NORMS)
def test_each_size_computes_the_plain_jnet_of_that_size(per_size_norm):
    """The same weights give the per-size network's computation: eval logits and every training level."""
    network = _network(per_size_norm)
    for size in SIZES:
        fixed = network.at_size(size)
        assert isinstance(fixed, JNet) and fixed.head.levels == {16: 4, 32: 3, 64: 2, 128: 1}[size]
        x = torch.randn(2, 2, size, size)
        network.eval(), fixed.eval()
        with torch.no_grad():
            torch.testing.assert_close(network(x), fixed(x), rtol=1e-5, atol=1e-5)
        network.train(), fixed.train()
        for switched, plain in zip(network(x), fixed(x)):
            torch.testing.assert_close(switched, plain, rtol=1e-5, atol=1e-5)


def test_the_head_of_a_larger_size_is_the_top_levels_of_the_16x16_head():
    network = _network()
    head = UpscalingHead(3, 2, init="default")
    head.level_modules = network.head.level_modules[2:]
    logits = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network.head(logits, levels=2), head(logits))
        torch.testing.assert_close(network.head(logits, levels=2), network.head.reference_forward(logits, levels=2))


@pytest.mark.parametrize("per_size_norm", [True, "stats"])
def test_each_size_uses_its_own_norms(per_size_norm):
    """Perturbing the 32x32 norms' statistics changes the 32x32 output only."""
    network = _network(per_size_norm).eval()
    inputs = {size: torch.randn(1, 2, size, size) for size in (16, 32)}
    with torch.no_grad():
        before = {size: network(x) for size, x in inputs.items()}
        for module in network.modules():
            if isinstance(module, SizeSwitchedBatchNorm2d):
                module.norms[SIZES.index(32)].running_mean.add_(1.0)
            if isinstance(module, SizeStatisticsBatchNorm2d):
                module.running_means[SIZES.index(32)].add_(1.0)
                module.running_vars[SIZES.index(32)].mul_(0.25)
        after = {size: network(x) for size, x in inputs.items()}
    assert torch.equal(before[16], after[16])
    assert (before[32] - after[32]).abs().max() > 1e-4  # float noise is ~1e-8 here: only the 32x32 statistics moved it


def test_training_at_one_size_updates_that_sizes_statistics_only():
    """Per-size statistics: a training step at 64x64 moves the 64x64 running statistics of every norm, no other
    size's, and the shared affine transforms get their gradient."""
    network = _network("stats").train()
    norms = [m for m in network.modules() if isinstance(m, SizeStatisticsBatchNorm2d)]
    assert len(norms) == len([m for m in _network().modules() if isinstance(m, torch.nn.BatchNorm2d)]) > 0
    before = [(norm.running_means.clone(), norm.running_vars.clone()) for norm in norms]
    sum(level.sum() for level in network(torch.randn(4, 2, 64, 64))).backward()
    for norm, (means, variances) in zip(norms, before):
        moved = [not (torch.equal(norm.running_means[i], means[i]) and torch.equal(norm.running_vars[i], variances[i])) for i in range(len(SIZES))]
        assert moved == [size == 64 for size in SIZES]
        assert norm.weight.grad is not None and norm.weight.grad.abs().sum() > 0
    assert {tuple(norm.sides) for norm in norms} >= {(16, 32, 64, 128), (1, 2, 4, 8)}  # the bottleneck's and the top's


def test_parameters_beyond_the_backbone_and_the_head_are_the_per_size_norms_only():
    shared, switched, statistics = _network(False), _network(True), _network("stats")
    head = sum(p.numel() for p in shared.head.parameters())
    assert head == 15 * 3 * 4 == 180  # the 4-level head, whatever the size
    backbone = sum(p.numel() for p in shared.backbone.parameters())
    extra = sum(p.numel() for p in switched.parameters()) - backbone - head
    assert shared.norm_parameters_per_size == 0
    assert extra == (len(SIZES) - 1) * switched.norm_parameters_per_size > 0
    # per-size statistics: no parameter added, the statistics (buffers) counted apart
    assert sum(p.numel() for p in statistics.parameters()) == backbone + head and statistics.norm_parameters_per_size == 0
    buffers = sum(b.numel() for name, b in statistics.backbone.named_buffers() if name.endswith(("running_means", "running_vars")))
    assert buffers == len(SIZES) * statistics.norm_statistics_per_size and statistics.norm_statistics_per_size == switched.norm_statistics_per_size


def test_weights_for_other_sizes_are_refused():
    network = _network()
    other = SwitchableJNet(ELUNet(2, 3, features=4), 3, sizes=(32, 64))
    with pytest.raises(RuntimeError, match="trained for the input sizes 32, 64, this network serves 16, 32, 64, 128"):
        network.load_state_dict(other.state_dict(), strict=False)


def test_downsampling_a_batch_equals_the_bundles_lowres_input_step():
    import numpy as np

    from jnet.engines import downsample_batch
    from jnet.processing import resize_slices

    images = torch.randn(3, 2, 256, 256)
    for mode in ("area", "nearest-exact", "bilinear"):
        expected = np.stack([resize_slices(image.numpy(), 32, mode) for image in images])
        np.testing.assert_allclose(downsample_batch(images, 32, mode).numpy(), expected, rtol=0, atol=1e-5)


def test_the_trainer_cycles_the_sizes_one_per_iteration():
    from jnet.engines import PrepareBatchAnySize

    prepare = PrepareBatchAnySize([16, 32, 64, 128])
    batch = {"image": torch.randn(2, 2, 256, 256), "label": torch.zeros(2, 1, 256, 256)}
    shapes = [tuple(prepare(batch)[0].shape[-2:]) for _ in range(5)]
    assert shapes == [(16, 16), (32, 32), (64, 64), (128, 128), (16, 16)]
    assert tuple(prepare(batch)[1].shape) == (2, 1, 256, 256)  # the label stays at full resolution
    with pytest.raises(ValueError, match="mode must be one of"):
        PrepareBatchAnySize([16], mode="cubic")


def test_the_sizes_take_turns_in_proportion_to_the_head_levels_they_run():
    from jnet.engines import level_weighted_cycle

    cycle = level_weighted_cycle([128, 16, 64, 32])
    assert [cycle.count(size) for size in SIZES] == [4, 3, 2, 1]
    assert all(a != b for a, b in zip(cycle, cycle[1:]))  # spread: no size twice in a row
    assert level_weighted_cycle([64, 128]) == [64, 128, 64]
    with pytest.raises(ValueError, match="smaller than output_size"):
        level_weighted_cycle([256])


def test_a_weighted_cycle_gives_each_size_its_share_spread_out():
    """The ablation ``more_64.json``'s schedule: the counts as asked, no size twice in a row, and the one shipped
    schedule is this function with the level weights."""
    from jnet.engines import level_weighted_cycle, weighted_cycle

    cycle = weighted_cycle({128: 1, 16: 8, 64: 5, 32: 6})
    assert [cycle.count(size) for size in SIZES] == [8, 6, 5, 1]
    assert all(a != b for a, b in zip(cycle, cycle[1:]))
    assert weighted_cycle({16: 4, 32: 3, 64: 2, 128: 1}) == level_weighted_cycle(SIZES)
    for bad in ({}, {16: 0, 32: 1}, {16: 2.5, 32: 1}):
        with pytest.raises(ValueError, match="whole weight >= 1"):
            weighted_cycle(bad)


def test_one_training_on_every_size_then_evaluation_at_two_sizes_then_inference_at_auto(tiny_dataset, tmp_path):
    """Typed as a user would, in the prostate_mri_lowres_any bundle: train once (configs/train.json), evaluate the one
    models/model.pt at 16x16 and at 64x64 (--input_size picks the operating point), segment with --input_size auto
    (it prints the size it chose and writes every mask), and an unsupported size is refused naming the supported."""
    import glob
    import json
    import os

    from conftest import BUNDLES, TINY_OVERRIDES, run_bundle

    bundle = os.path.join(BUNDLES, "prostate_mri_lowres_any")
    root = str(tmp_path)
    result = run_bundle(bundle, ["configs/train.json"], bundle_root=root, dataset_dir=tiny_dataset, epochs=1, **TINY_OVERRIDES)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    weights = torch.load(os.path.join(root, "models", "model.pt"), weights_only=True)
    assert weights["supported_sizes"].tolist() == [16, 32, 64, 128]
    statistics = [value for key, value in weights.items() if key.endswith("running_means")]
    assert statistics and all(value.shape[0] == 4 for value in statistics)  # one row per size, each recomputed:
    assert all(not torch.equal(value[i], value[j]) for value in statistics[:1] for i in range(4) for j in range(i))
    scores = {}
    for size in (16, 64):
        out = os.path.join(root, f"eval_{size}")
        result = run_bundle(bundle, ["configs/train.json", "configs/evaluate.json"], bundle_root=root, dataset_dir=tiny_dataset,
                            output_dir=out, input_size=size, **TINY_OVERRIDES)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        scores[size] = open(os.path.join(out, "val_mean_dice_raw.csv")).read().splitlines()
    assert len(scores[16]) == len(scores[64]) > 1 and scores[16][0] == scores[64][0]  # every validation volume scored
    # two operating points of one model: the parsed configs feed it 16x16 and 64x64 slices of the same volume
    from jnet.bundles.parse import bundle_parser

    outputs = {}
    for size in (16, 64):
        parser = bundle_parser(bundle)
        parser.update({"bundle_root": root, "dataset_dir": tiny_dataset, "input_size": size, **TINY_OVERRIDES})
        network = parser.get_parsed_content("network_def")
        network.load_state_dict(weights)
        item = parser.get_parsed_content("validate#preprocessing")(parser.get_parsed_content("validate#dataset#data")[0])
        assert tuple(item["image"].shape[1:3]) == (size, size)
        with torch.no_grad():
            outputs[size] = network.eval()(item["image"].permute(3, 0, 1, 2).as_tensor()[:2])
    assert outputs[16].shape == outputs[64].shape == (2, 3, 256, 256) and not torch.allclose(outputs[16], outputs[64])
    # inference at auto: a threshold no CPU reaches picks the smallest size, and says so; every test image segmented
    out = os.path.join(root, "masks")
    result = run_bundle(bundle, ["configs/inference.json"], bundle_root=root, dataset_dir=tiny_dataset, output_dir=out,
                        input_size="auto", min_images_per_s=1e9, num_workers=0, features=4)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert "input_size auto: 16x16, none reaches 1e+09 images/s: the smallest" in printed
    assert "(images/s at the inferer's slices per call: 16x16 " in printed and "128x128 not timed (a smaller size was too slow)" in printed
    images = glob.glob(os.path.join(tiny_dataset, "imagesTs", "*.nii.gz"))
    assert len(glob.glob(os.path.join(out, "**", "*.nii.gz"), recursive=True)) == len(images) > 0
    result = run_bundle(bundle, ["configs/train.json", "configs/evaluate.json"], bundle_root=root, dataset_dir=tiny_dataset,
                        output_dir=os.path.join(root, "eval_48"), input_size=48, **TINY_OVERRIDES)
    assert result.returncode != 0 and "input_size 48: this network serves 16, 32, 64, 128 (or auto)" in result.stdout + result.stderr
    metadata = json.load(open(os.path.join(bundle, "configs", "metadata.json")))
    assert metadata["supported_input_sizes"] == [16, 32, 64, 128] and metadata["default_input_size"] == 32
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32]


def test_auto_picks_the_largest_size_fast_enough_and_says_which(capsys):
    from jnet.networks import operating_size, time_sizes

    network = _network()
    rates = time_sizes(network, SIZES, 2, 4, "cpu", budget_s=0.4)
    assert list(rates) == list(SIZES) and rates[16] > rates[128] > 0  # smallest first; 16x16 runs faster than 128x128
    threshold = (rates[32] + rates[64]) / 2  # between the two: 32 is fast enough, 64 not (measured again inside)
    chosen = operating_size("auto", network, 2, min_images_per_s=threshold, batch_size=4, budget_s=0.4)
    assert chosen in SIZES  # timings vary between calls (another job on the machine): the message names what was measured
    printed = capsys.readouterr().out
    assert printed.startswith(f"input_size auto: {chosen}x{chosen}, ") and "(images/s at batch 4: 16x16 " in printed
    if chosen < 64:  # the first size below the threshold ends the timing: the larger ones are slower still
        assert "128x128 not timed (a smaller size was too slow)" in printed
    assert operating_size("auto", network, 2, min_images_per_s=1e12, batch_size=4, budget_s=0.2) == 16
    printed = capsys.readouterr().out
    assert "none reaches 1e+12 images/s: the smallest" in printed and "32x32, 64x64, 128x128 not timed" in printed
    assert list(time_sizes(network, SIZES, 2, 4, "cpu", budget_s=0.0, stop_below=1e12)) == [16]  # too slow: the rest untimed
    assert operating_size(64, network, 2) == 64
    with pytest.raises(ValueError, match="input_size 48: this network serves 16, 32, 64, 128"):
        operating_size(48, network, 2)
    with pytest.raises(ValueError, match="needs --min_images_per_s"):
        operating_size("auto", network, 2)


@pytest.mark.parametrize("opset", [13, 17])
def test_each_size_exports_to_onnx_with_the_eager_logits(tmp_path, opset):
    import numpy as np
    import onnxruntime

    from jnet.deploy.export import export_onnx

    network = _network("stats" if opset == 13 else True).eval()
    for size in SIZES:
        path = export_onnx(network.at_size(size), (1, 2, size, size), str(tmp_path / f"model_{size}.onnx"), opset=opset)
        x = torch.randn(3, 2, size, size)
        with torch.no_grad():
            expected = network(x).numpy()
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_each_size_is_counted_with_the_head_levels_it_runs():
    from jnet.tools.bench.macs import count_macs

    network = _network().eval()
    for size in SIZES:
        assert count_macs(network, (1, 2, size, size)) == count_macs(network.at_size(size).eval(), (1, 2, size, size))


@pytest.mark.parametrize("per_size_norm", [False, "stats"])
def test_torchscript_serves_every_size_as_the_eager_network(per_size_norm):
    """``monai.bundle ckpt_export`` scripts ``network_def``: the scripted switchable network (shared norms or per-size
    statistics) computes the eager logits at every size and refuses another size with the same message."""
    network = _network(per_size_norm).eval()
    scripted = torch.jit.script(network)
    for size in SIZES:
        x = torch.randn(2, 2, size, size)
        with torch.no_grad():
            assert torch.allclose(scripted(x), network(x), atol=1e-5)  # the eager no-grad path writes the folded head in place
    with pytest.raises(Exception, match="input of 48x48: this network serves 16x16, 32x32, 64x64, 128x128 inputs"):
        scripted(torch.randn(1, 2, 48, 48))


@pytest.mark.parametrize("per_size", ["stats", True])
def test_calibration_gives_each_size_the_statistics_of_its_own_batches(per_size):
    """Each size's running statistics become the cumulative average of its batch statistics over the given batches
    (what a plain BatchNorm with ``momentum=None`` keeps), with the weights and the training mode untouched - per-size
    statistics with a shared affine (``"stats"``) and whole per-size BatchNorms (``True``, ``per_size_norm``) alike."""
    from jnet.engines import downsample_batch
    from jnet.handlers import calibrate_size_statistics
    from jnet.handlers.size_statistics import size_norms

    network = _network(per_size).eval()
    assert len(size_norms(network)) > 0
    batches = [torch.randn(4, 2, 256, 256, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    weights = {name: p.clone() for name, p in network.named_parameters()}
    calibrate_size_statistics(network, batches, [16, 64])
    assert not network.training and all(torch.equal(p, weights[name]) for name, p in network.named_parameters())
    for size in SIZES:
        plain = _network(per_size).at_size(size)  # the uncalibrated statistics of that size (same seed)
        if size in (16, 64):
            for module in plain.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.momentum = None
            plain.train()
            with torch.no_grad():
                for images in batches:
                    plain(downsample_batch(images, size))
        expected = [m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        got = [m for m in network.at_size(size).modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert len(got) == len(expected) > 0
        for norm, reference in zip(got, expected):
            torch.testing.assert_close(norm.running_mean, reference.running_mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(norm.running_var, reference.running_var, rtol=1e-5, atol=1e-6)
    assert {norm.momentum for norm in size_norms(network)} == {0.1}  # restored


def test_the_calibration_handler_sets_the_validation_size_first_and_every_size_for_a_new_best():
    """Before a validation only the validation size is recomputed; after one that reaches a new best, every size
    (BestModelSaver, attached after it, then writes weights whose statistics are all their own)."""
    from ignite.engine import Engine

    from jnet.engines import PrepareBatchAnySize
    from jnet.handlers import SizeStatisticsCalibration

    network = _network("stats")
    norm = next(m for m in network.modules() if isinstance(m, SizeStatisticsBatchNorm2d))
    prepare = PrepareBatchAnySize(SIZES, keep_batches=2)
    for k in range(3):  # the trainer's batches: the latest two are kept
        prepare({"image": torch.randn(4, 2, 256, 256), "label": torch.zeros(4, 1, 256, 256)})
    assert len(prepare.recent) == 2
    handler = SizeStatisticsCalibration(network, prepare, validation_size=32)

    def validate(best_metric_epoch: int) -> list[bool]:
        """One validation run of an evaluator whose key metric was (1) or was not (-1) a new best; which sizes moved."""
        start = norm.running_means.clone()
        evaluator = Engine(lambda engine, batch: None)
        handler.attach(evaluator)
        evaluator.state.best_metric_epoch = best_metric_epoch
        evaluator.run([0], max_epochs=1)
        return [not torch.equal(norm.running_means[i], start[i]) for i in range(len(SIZES))]

    assert validate(-1) == [False, True, False, False]  # no new best: the validation size only
    assert validate(-1) == [False, False, False, False]  # the same batches give the same statistics
    prepare({"image": torch.randn(4, 2, 256, 256), "label": torch.zeros(4, 1, 256, 256)})  # one more training iteration
    assert validate(1) == [True, True, True, True]  # a new best: every size
    with pytest.raises(ValueError, match="keep batches"):
        SizeStatisticsCalibration(network, PrepareBatchAnySize(SIZES), validation_size=32)


def test_the_any_bundles_calibrate_before_the_best_model_is_saved():
    """The generated train.json lists the calibration before BestModelSaver, enabled wherever statistics are per size
    (per_size_stats, the default, or per_size_norm), disabled for shared statistics."""
    import os

    from conftest import BUNDLES
    from jnet.bundles.parse import bundle_parser

    for bundle in ("prostate_mri_lowres_any", "brats_mri_lowres_any"):
        parser = bundle_parser(os.path.join(BUNDLES, bundle))
        targets = [handler["_target_"] for handler in parser["validate#handlers"]]
        assert targets.index("jnet.handlers.SizeStatisticsCalibration") < targets.index("jnet.handlers.BestModelSaver")
        for overrides, enabled in (({}, True), ({"per_size_stats": False}, False), ({"per_size_stats": False, "per_size_norm": True}, True)):
            for key, value in overrides.items():
                parser[key] = value
            assert parser.get_parsed_content("validate#handlers#0#_disabled_") is not enabled
            assert parser.get_parsed_content("train#trainer#prepare_batch#keep_batches") == (4 if enabled else 0)
