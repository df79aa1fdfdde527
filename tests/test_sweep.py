import json
import os
import shutil
import subprocess

import pytest
import torch

from conftest import BUNDLE_16, REPO
from jnet.bundles.render import provenance
from jnet.tools.bundle_commands import bundle_command
from jnet.tools.sweep import run_sweep
from jnet.tools.sweep.data import load_sweep_data
from jnet.tools.sweep.publish import ESTIMATES_BEGIN, ESTIMATES_END, _update_jetson_estimates, publish_results, render_results_page, target_checks
from jnet.tools.sweep.train import SETTINGS, VARIANTS, bundle_run_command, run_parser, train_run

pytestmark = pytest.mark.timeout(900)

TINY = {"epochs": 2, "val_interval": 1, "batch_size": 2, "features": 4, "num_workers": 0, "num_folds": 3}


def _teacher_file(tmp_path) -> str:
    """Weights of the 256x256 reference network (features 4, untrained): the distillation teacher."""
    teacher = run_parser(BUNDLE_16, VARIANTS["reference"].config_files, {"features": 4}).get_parsed_content("network_def")
    path = str(tmp_path / "teacher.pt")
    torch.save(teacher.state_dict(), path)
    return path


@pytest.mark.parametrize("variant", ["head", "head_paper", "distillation", "super_resolution", "any"])
def test_a_sweep_run_trains_the_model_its_bundle_command_trains(variant, tiny_dataset, tmp_path):
    """The sweep trains in-process on cached volumes; the ``monai.bundle run`` command it records for the run, typed in
    the bundle folder, writes a byte-for-byte equal state dict (float32 CPU, same seed): one training path. The
    training-only auxiliaries save the student network alone (the same keys as ``head``)."""
    data = load_sweep_data(BUNDLE_16, tiny_dataset, str(tmp_path / "volumes.pt"), num_folds=3)
    files = VARIANTS[variant].config_files
    overrides = {"dataset_dir": tiny_dataset, "seed": 1, **TINY}
    if VARIANTS[variant].teacher:
        overrides["teacher_file"] = _teacher_file(tmp_path)
    network, seconds = train_run(run_parser(BUNDLE_16, files, {**overrides, "bundle_root": str(tmp_path / "sweep")}), data)
    assert seconds > 0
    command = bundle_run_command(BUNDLE_16, files, overrides)
    assert command.startswith("python -m monai.bundle run --config_file \"['configs/train.json'") and "--seed 1" in command
    if variant == "head_paper":
        assert "'../../configs/ablation/head_paper.json'" in command  # typed in bundles/<name>: the repo's file
    argv = bundle_command(["configs/train.json", *[os.path.relpath(f, BUNDLE_16) if os.path.isabs(f) else f for f in files]],
                          {**overrides, "bundle_root": str(tmp_path / "bundle")})
    result = subprocess.run(argv, cwd=BUNDLE_16, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model_name = run_parser(BUNDLE_16, files, overrides)["model_name"]
    by_bundle = torch.load(tmp_path / "bundle" / "models" / model_name, weights_only=True)
    by_sweep = torch.load(tmp_path / "sweep" / "models" / model_name, weights_only=True)
    assert list(by_bundle) == list(by_sweep)
    assert all(torch.equal(by_bundle[k], by_sweep[k]) for k in by_bundle)
    assert all(torch.equal(network.state_dict()[k], by_sweep[k]) for k in by_sweep)  # the run scored the saved model
    assert list(by_sweep) == list(run_parser(BUNDLE_16, files, {"features": 4}).get_parsed_content("network_def").state_dict())


def test_every_ablation_file_changes_what_it_says_and_nothing_else():
    """Each one-change override, parsed over the 16x16 bundle's train.json, differs from ``head`` in its own keys only."""
    head = run_parser(BUNDLE_16, (), {})
    base_keys = set(head.get())
    changed = {}
    for name, variant in VARIANTS.items():
        if not variant.factor:
            continue
        parser = run_parser(BUNDLE_16, variant.config_files, {})
        keys = set(parser.get())
        assert keys >= base_keys
        changed[name] = sorted(k for k in keys if k != "model_name" and (k not in base_keys or parser[k] != head[k]))
        assert parser["model_name"] == f"model_{name}.pt"  # a hand run beside models/model.pt never overwrites it
    assert changed == {
        "random_init": ["head_init"], "head_skip": ["head_skip"], "bce_loss": ["loss"], "nearest_input": ["lowres_mode"],
        "soft_targets": ["intermediate_targets"], "exp_weights": ["loss_weights"], "top_level_loss": ["loss_weights"],
        "fixed_upsampling": ["network_def"],
        # training only: the kept high-resolution slice, the trainer's loss and prepare_batch, the auxiliary's own keys
        "distillation": ["distillation_loss", "distillation_temperature", "distillation_weight", "highres_key",
                         "teacher_def", "teacher_file", "train"],
        "super_resolution": ["highres_key", "optimizer", "super_resolution_loss", "super_resolution_weight", "train"],
    }
    for name in ("distillation", "super_resolution"):  # in "train", only the trainer's loss and prepare_batch differ
        parser = run_parser(BUNDLE_16, VARIANTS[name].config_files, {})
        trainer, head_trainer = parser["train#trainer"], head["train#trainer"]
        assert sorted(k for k in set(trainer) | set(head_trainer) if trainer.get(k) != head_trainer.get(k)) == ["loss_function", "prepare_batch"]
        assert {k: v for k, v in parser["train"].items() if k != "trainer"} == {k: v for k, v in head["train"].items() if k != "trainer"}
        assert parser["network_def"] == head["network_def"] and parser["loss"] == head["loss"]
    frozen = run_parser(BUNDLE_16, VARIANTS["fixed_upsampling"].config_files, {}).get_parsed_content("network_def")
    assert not any(p.requires_grad for p in frozen.head.parameters()) and all(p.requires_grad for p in frozen.backbone.parameters())
    loss = run_parser(BUNDLE_16, VARIANTS["top_level_loss"].config_files, {}).get_parsed_content("loss")
    assert loss.get_weights(5) == [1.0, 0.0, 0.0, 0.0, 0.0]
    bce = run_parser(BUNDLE_16, VARIANTS["bce_loss"].config_files, {}).get_parsed_content("loss")
    assert type(bce.loss).__name__ == "BCEWithLogitsLoss"


def test_the_paper_setting_is_one_binary_whole_gland_channel(tiny_dataset, tmp_path):
    data = load_sweep_data(BUNDLE_16, tiny_dataset, str(tmp_path / "volumes.pt"), SETTINGS["paper"], num_folds=3)
    assert data.num_classes == 1 and data.multilabel
    labels = torch.cat([v["label"].flatten() for v in data.train_volumes])
    plain = load_sweep_data(BUNDLE_16, tiny_dataset, str(tmp_path / "plain.pt"), num_folds=3)
    assert set(labels.unique().tolist()) == {0, 1}
    assert torch.equal(labels, torch.cat([(v["label"] > 0).flatten() for v in plain.train_volumes]).to(labels.dtype))  # PZ + TZ
    network = run_parser(BUNDLE_16, SETTINGS["paper"] + VARIANTS["head_paper"].config_files, {}).get_parsed_content("network_def")
    assert network.head.num_classes == 1 and network.head.skip


def test_sweep_runs_end_to_end_resumes_and_publishes(tiny_dataset, tmp_path):
    work = str(tmp_path / "sweep")
    kwargs = dict(
        work_dir=work, dataset_dir=tiny_dataset, resolutions=(16, 32), variants=("baseline", "head", "random_init"),
        factor_resolutions=(16,), seeds=2, epochs=1, val_interval=1, batch_size=2, features=4, reference=False,
        speed_budget_s=0.05,
    )
    results = run_sweep(**kwargs)
    expected = {f"{v}@{r}#{s}" for v in ("baseline", "head") for r in (16, 32) for s in (0, 1)} | {"random_init@16#0", "random_init@16#1"}
    assert set(results["runs"]) == expected
    for run in results["runs"].values():
        assert len(run["jaccard"]) == 2 and all(0.0 <= v <= 1.0 or v != v for v in run["jaccard"])  # PZ, TZ (or NaN)
        assert os.path.isfile(os.path.join(work, run["model_file"])) and run["command"].startswith("cd bundles/prostate_mri_lowres_")
    head = results["speed"]["head@16"]
    assert head["added_parameters"] == 180 and results["speed"]["baseline@16"]["added_parameters"] == 0
    saved = json.load(open(os.path.join(work, "sweep.json")))
    assert saved["summary"]["head@32"]["seeds"] == 2
    # the paired effect is the per-seed difference of the runs' mean foreground Jaccard
    runs = saved["runs"]
    mean = lambda run: sum(run["jaccard"]) / len(run["jaccard"])  # noqa: E731 (both classes present in every volume here)
    differences = [mean(runs[f"random_init@16#{s}"]) - mean(runs[f"head@16#{s}"]) for s in (0, 1)]
    effect = saved["paired_vs_head"]["random_init@16"]
    assert effect["delta_jaccard_per_seed"] == pytest.approx(differences)
    assert effect["delta_jaccard_mean"] == pytest.approx(sum(differences) / 2)
    assert effect["delta_jaccard_std"] == pytest.approx(abs(differences[0] - differences[1]) / 2 ** 0.5)  # ddof=1
    assert "random_init@32" not in saved["paired_vs_head"]  # factors ran at 16 only
    table = open(os.path.join(work, "sweep.md")).read()
    assert "| 16x16 | head |" in table and "| 32x32 | baseline |" in table and "random_init" not in table
    assert "| random_init | the head's layers start" in open(os.path.join(work, "ablation.md")).read()
    for picture in ("quality_vs_throughput.png", "examples.png"):
        with open(os.path.join(work, picture), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # resumable: a second call redoes nothing (the stored training times are kept as they are)
    times = {k: v["train_s"] for k, v in saved["runs"].items()}
    again = run_sweep(**kwargs)
    assert {k: v["train_s"] for k, v in again["runs"].items()} == times
    # per volume scores are kept: the run's class means are their NaN-aware means
    run = saved["runs"]["head@16#0"]
    assert len(run["per_volume"]) == saved["config"]["held_out_volumes"]
    for c, class_mean in enumerate(run["dice"]):
        values = [v["dice"][c] for v in run["per_volume"].values() if v["dice"][c] == v["dice"][c]]
        assert class_mean == pytest.approx(sum(values) / len(values)) if values else class_mean != class_mean
    assert saved["wall_s"] > 0

    # publishing: docs/results.md rendered from docs/results/*.json alone, the head's figures as eval_metrics
    configs, docs, bundles = tmp_path / "configs", tmp_path / "docs", tmp_path / "bundles"
    shutil.copytree(os.path.join(REPO, "configs"), configs)
    docs.mkdir()
    published = publish_results(work, None, str(docs), str(configs), str(bundles))
    page = (docs / "results.md").read_text()
    assert page == render_results_page(str(docs / "results"))  # the committed JSON re-renders the page
    assert json.loads((docs / "results" / "sweep.json").read_text()) == saved
    assert "python -m jnet sweep --dataset prostate --dataset_dir" in page and saved["config"]["machine"] in page
    # the command on the page is the one that reproduces this sweep (the options away from the defaults)
    assert (f'--dataset_dir {tiny_dataset} --resolutions "[16,32]" --variants "[baseline,head,random_init]" '
            '--factor_resolutions "[16]" --seeds 2 --reference False --epochs 1 --val_interval 1 --batch_size 2 --features 4`') in page
    assert "| 16x16 | head |" in page and "![examples](results/examples.png)" in page and "- `random_init` (" in page
    assert (docs / "results" / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert published["eval_metrics_from_sweep"] == ["prostate_mri_lowres_16", "prostate_mri_lowres_32"]
    metadata = json.load(open(bundles / "prostate_mri_lowres_16" / "configs" / "metadata.json"))
    summary = saved["summary"]["head@16"]
    assert metadata["eval_metrics"]["mean_jaccard"] == round(summary["jaccard_mean"], 4)
    assert metadata["eval_metrics"]["transition_zone_dice"] == round(summary["dice_per_class"][1], 4)
    assert "python -m monai.bundle run --config_file \"['configs/train.json']\"" in metadata["description"]
    assert "--seed <seed> --num_workers 0 --batch_size 2 --features 4` (mean over seeds 0, 1)" in metadata["description"]
    brats = json.load(open(bundles / "brats_mri_lowres_16" / "configs" / "metadata.json"))
    kept = json.load(open(os.path.join(REPO, "configs", "eval_metrics.json")))
    assert brats["eval_metrics"] == kept["brats_mri_lowres_16"]  # not in this sweep: its figures and source kept
    assert provenance("brats_mri_lowres_16", kept) in brats["description"]


def _paired(delta: float, std: float, rival_higher_in: int) -> dict:
    """Rival minus head, seed by seed, as ``paired_vs_head`` holds it."""
    entry = {"seeds": 3, "delta_jaccard_mean": delta, "delta_jaccard_std": std, "higher_in": rival_higher_in}
    return {"baseline@16": entry, "bilinear@16": {**entry, "higher_in": 0, "delta_jaccard_std": 0.01}}


def _speed(images_per_s: float) -> dict:
    return {runtime: {"images_per_s": images_per_s} for runtime in ("eager", "onnxruntime")}


def test_every_any_size_ablation_changes_its_own_keys_of_the_any_bundle():
    from jnet.bundles.parse import bundle_parser
    from jnet.tools.sweep.train import bundle_for, epochs_factor

    bundle = bundle_for("prostate", 16, True)
    shipped = run_parser(bundle, (), {})
    changed = {}
    for name, variant in VARIANTS.items():
        if variant.any_size and name != "any":
            parser = run_parser(bundle, variant.config_files, {})
            changed[name] = sorted(k for k in set(parser.get()) | set(shipped.get()) if parser.get(k) != shipped.get(k))
    assert changed == {"any_uniform": ["any_schedule"], "any_shared_stats": ["per_size_stats"], "any_norm": ["per_size_norm", "per_size_stats"],
                       "any_more_64": ["any_schedule", "model_name"], "any_more_128": ["any_schedule", "model_name"],
                       "any_val128": ["input_size", "model_name"]}
    more_64 = run_parser(bundle, VARIANTS["any_more_64"].config_files, {}).get_parsed_content("any_schedule")
    assert [more_64.count(size) for size in (16, 32, 64, 128)] == [8, 6, 5, 1]
    more_128 = run_parser(bundle, VARIANTS["any_more_128"].config_files, {}).get_parsed_content("any_schedule")
    assert [more_128.count(size) for size in (16, 32, 64, 128)] == [4, 3, 2, 2]
    assert run_parser(bundle, VARIANTS["any_val128"].config_files, {}).get_parsed_content("operating_size") == 128
    assert shipped.get_parsed_content("any_schedule") == [16, 32, 64, 16, 32, 128, 16, 64, 32, 16]
    assert run_parser(bundle, VARIANTS["any_uniform"].config_files, {}).get_parsed_content("any_schedule") == [16, 32, 64, 128]
    assert epochs_factor("prostate", VARIANTS["any"]) == 2.0 and epochs_factor("prostate", VARIANTS["head"]) == 1.0
    # the bundle validates as many times as a per-size bundle, as the sweep's any runs do (run_overrides)
    per_size = bundle_parser(bundle_for("prostate", 16))
    assert shipped["epochs"] / shipped["val_interval"] == per_size["epochs"] / per_size["val_interval"] == 100


def test_the_any_size_variant_trains_once_per_seed_and_is_scored_at_every_size(tiny_dataset, tmp_path):
    work = str(tmp_path / "sweep")
    results = run_sweep(work_dir=work, dataset_dir=tiny_dataset, resolutions=(16, 64), variants=("head", "any"), seeds=1, epochs=1,
                        val_interval=1, batch_size=2, features=4, reference=False, speed_budget_s=0.05)
    assert set(results["runs"]) == {"head@16#0", "head@64#0", "any@16#0", "any@64#0"}
    at_16, at_64 = results["runs"]["any@16#0"], results["runs"]["any@64#0"]
    assert at_16["model_file"] == at_64["model_file"] and at_16["train_s"] == at_64["train_s"]  # one training
    assert at_16["trained_once_for"] == [16, 64] and at_64["command"].endswith("(scored with --input_size 64)")
    assert (at_16["scored_input_size"], at_64["scored_input_size"], results["runs"]["head@16#0"]["scored_input_size"]) == (16, 64, 16)
    assert at_16["command"].startswith("cd bundles/prostate_mri_lowres_any && ") and "--config_file \"['configs/train.json']\" " in at_16["command"]
    # the any network trains its bundle's epochs per per-size epoch (200 / 100): 2 x 1 epoch -> 2
    assert " --epochs 2 " in at_16["command"] and " --epochs 1 " in results["runs"]["head@16#0"]["command"]
    # ... and validates as many times as a per-size run (every 2 x 1 epochs), as its bundle does (200 epochs, every 2nd)
    assert " --val_interval 2 " in at_16["command"] and " --val_interval 1 " in results["runs"]["head@16#0"]["command"]
    assert at_16["per_volume"] != at_64["per_volume"] or at_16["jaccard"] == at_64["jaccard"] == [0.0, 0.0]
    assert results["speed"]["any@64"]["added_parameters"] == 180 == results["speed"]["head@16"]["added_parameters"]
    assert "| 64x64 | any |" in open(os.path.join(work, "sweep.md")).read()
    # resumed, nothing retrained: every command derived again, the scored size kept after an any run's command
    again = run_sweep(work_dir=work, dataset_dir=tiny_dataset, resolutions=(16, 64), variants=("head", "any"), seeds=1, epochs=1,
                      val_interval=1, batch_size=2, features=4, reference=False, speed_budget_s=0.05)
    assert {k: r["command"] for k, r in again["runs"].items()} == {k: r["command"] for k, r in results["runs"].items()}
    assert again["runs"]["any@64#0"]["train_s"] == at_64["train_s"]


def test_an_any_bundles_eval_metrics_source_gives_the_command_then_the_size_scored():
    """The ``_any`` bundle's ``eval_metrics`` come from the published sweep's any runs at its default size: the bundle
    command in backticks (as typed), the size it was scored at after it."""
    from jnet.tools.sweep.publish import _eval_metrics_source

    sweep = json.load(open(os.path.join(REPO, "docs", "results", "sweep_any.json")))
    source = _eval_metrics_source(sweep, "prostate_mri_lowres_any")
    assert source.startswith("`cd bundles/prostate_mri_lowres_any && python -m monai.bundle run ")
    assert "--num_workers 0` (scored with --input_size 32) (mean over seeds 0, 1, 2)" in source


def test_targets_need_every_paired_seed_and_a_margin_larger_than_the_spread_of_the_differences():
    beats = "16x16: head beats {} in mean foreground Jaccard in every paired seed, by more than the std of the differences"
    checks = dict((what, met) for what, met, _ in target_checks({"paired_vs_head": _paired(-0.05, 0.04, 0), "speed": {}}))
    assert checks[beats.format("baseline")] is True and checks[beats.format("bilinear")] is True
    checks = dict((what, met) for what, met, _ in target_checks({"paired_vs_head": _paired(-0.05, 0.06, 0), "speed": {}}))
    assert checks[beats.format("baseline")] is False  # the margin is within the spread of the differences
    checks = dict((what, met) for what, met, _ in target_checks({"paired_vs_head": _paired(-0.05, 0.01, 1), "speed": {}}))
    assert checks[beats.format("baseline")] is False  # the rival was higher in one seed
    speed = {"head@16": _speed(2000.0), "reference@256": _speed(99.0)}
    checks = target_checks({"speed": speed})
    assert [met for _, met, _ in checks] == [True, True] and "20x" in checks[0][2]
    speed["reference@256"] = _speed(101.0)
    assert [met for _, met, _ in target_checks({"speed": speed})] == [False, False]


def test_the_head_reaches_the_baseline_at_twice_its_input_size_only_in_every_paired_seed():
    reaches = "16x16 head reaches the 32x32 baseline: at least as high in every paired seed"
    runs = lambda head, baseline: {**{f"head@16#{s}": {"jaccard": [v]} for s, v in enumerate(head)},  # noqa: E731
                                   **{f"baseline@32#{s}": {"jaccard": [v]} for s, v in enumerate(baseline)}}
    checks = {what: (met, numbers) for what, met, numbers in target_checks({"runs": runs([0.30, 0.31, 0.29], [0.28, 0.31, 0.25]), "speed": {}})}
    assert checks[reaches][0] is True and "higher in 2/3 seeds" in checks[reaches][1]
    checks = {what: met for what, met, _ in target_checks({"runs": runs([0.40, 0.40, 0.20], [0.28, 0.31, 0.25]), "speed": {}})}
    assert checks[reaches] is False  # higher on average, lower in one seed: not reached
    assert not any(what.startswith("32x32 head reaches") for what in checks)  # no 64x64 baseline runs: no check


def test_cost_targets_and_jetson_estimates_from_a_bench_report(tmp_path):
    from jnet.tools.bench.jetson import GraphCost, assumptions, estimate

    def variant(added, share, ort_b1, eager_b1, macs, kernels):
        shares = dict.fromkeys(("eager_images_per_s_b1", "eager_images_per_s", "onnxruntime_images_per_s_b1", "onnxruntime_images_per_s"), share)
        return {"head": {"added_parameters": added, "share_of_bilinear_throughput": shares, "macs": macs,
                         "onnxruntime": {"images_per_s_b1": ort_b1}, "eager": {"images_per_s_b1": eager_b1},
                         "jetson": estimate(GraphCost(macs, kernels, 1_000_000, 1_700_000))}}

    bench = {"machine": "test machine", "jetson_model": "the model", "jetson_assumptions": assumptions(), "bundles": {
        "prostate_mri_lowres_16": variant(180, 0.9, 3000.0, 600.0, 14e6, 86), "prostate_mri_lowres_128": variant(45, 0.74, 100.0, 70.0, 1.3e9, 86)}}
    checks = {what: (met, numbers) for what, met, numbers in target_checks({"speed": {}}, bench)}
    assert checks["the head adds at most 200 parameters in every bundle"] == (True, "largest: 180 (prostate_mri_lowres_16)")
    met, numbers = checks["every bundle keeps >= 75% of the bilinear-output throughput (b1, b32, eager, ONNX Runtime)"]
    assert not met and numbers.startswith("lowest: 74% (prostate_mri_lowres_128")
    assert checks["prostate_mri_lowres_16: ONNX Runtime batch 1 >= 1.5x PyTorch eager"] == (True, "3000 vs 600 images/s: 5.0x")
    page = tmp_path / "jetson.md"
    page.write_text(f"before\n{ESTIMATES_BEGIN}\n| stale | table |\n{ESTIMATES_END}\nafter\n")
    _update_jetson_estimates(bench, str(page))
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith(f"{ESTIMATES_END}\nafter\n") and "stale" not in text
    big = bench["bundles"]["prostate_mri_lowres_128"]["head"]["jetson"]["jetson_nano"]
    low, high = big["pessimistic"]["b1_images_per_s"], big["optimistic"]["b1_images_per_s"]
    assert low < 20 and f"| prostate_mri_lowres_128 | 1300.0 | 86 | 1.00 | {low:.0f}-{high:.0f} **(under 20)** |" in text
    small = bench["bundles"]["prostate_mri_lowres_16"]["head"]["jetson"]["jetson_nano"]["pessimistic"]["b1_images_per_s"]
    assert small > 20 and "| prostate_mri_lowres_16 | 14.0 | 86 | 1.00 | " in text and "(under 20)" not in text.split("prostate_mri_lowres_16")[1].splitlines()[0]


def test_a_cache_from_other_preprocessing_is_refused(tiny_dataset, tmp_path, monkeypatch):
    """The sweep's volume cache is tied to its data, configs and pre-processing code: a cache made by another
    version is refused with the file named, never silently mixed with new runs."""
    from jnet.errors import InputError
    from jnet.tools.sweep import data as sweep_data

    cache = str(tmp_path / "volumes.pt")
    first_plain = sweep_data._plain
    first = sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3)
    again = sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3)  # read back, same key
    assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["image"].affine, b["image"].affine)
               for a, b in zip(first.train_volumes, again.train_volumes))
    assert first.val_names == again.val_names and first.train_datalist == again.train_datalist
    with pytest.raises(InputError, match=r"volumes\.pt: volumes cached from other data, another train\.json or an older"):
        sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=2)  # other folds: other volumes
    with pytest.raises(InputError, match="use a new --work_dir"):
        sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, SETTINGS["paper"], num_folds=3)  # other labels
    monkeypatch.setattr(sweep_data, "cache_key", lambda *args: "pre-processing of another version")
    with pytest.raises(InputError, match="use a new --work_dir.*--revalidate_cache True"):
        sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3)
    # re-validation: a code change that leaves the volumes as they were keeps the cache (under the new key) ...
    kept = sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3, revalidate=True)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first.train_volumes, kept.train_volumes))
    assert torch.load(cache, weights_only=True)["cache_key"] == "pre-processing of another version"
    # ... and one that changes them is refused, the cache left as it was
    monkeypatch.setattr(sweep_data, "cache_key", lambda *args: "a pre-processing that changes the volumes")
    monkeypatch.setattr(sweep_data, "_plain", lambda volume: {**first_plain(volume), "image": first_plain(volume)["image"] + 1})
    with pytest.raises(InputError, match="differ from the cached ones the runs beside it were trained on"):
        sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3, revalidate=True)
    assert torch.load(cache, weights_only=True)["cache_key"] == "pre-processing of another version"


def test_the_kept_highres_slice_is_the_augmented_slice_the_input_was_made_from(tiny_dataset, tmp_path):
    """``highres_key`` copies the image after slice sampling and augmentation, just before ``LowResInputd``: the
    16x16 input is the area average of the kept 256x256 slice."""
    from monai.transforms import Compose

    data = load_sweep_data(BUNDLE_16, tiny_dataset, str(tmp_path / "volumes.pt"), num_folds=3)
    parser = run_parser(BUNDLE_16, VARIANTS["super_resolution"].config_files, {"seed": 0})
    random_transforms = Compose(parser.get_parsed_content("train#random_transforms"))
    random_transforms.set_random_state(seed=0)
    for sample in random_transforms(dict(data.train_volumes[0])):
        highres, image = sample["image_highres"], sample["image"]
        assert highres.shape[-2:] == (256, 256) and image.shape[-2:] == (16, 16)
        expected = torch.nn.functional.avg_pool2d(torch.as_tensor(highres).float()[None], 16)[0]
        torch.testing.assert_close(torch.as_tensor(image).float(), expected, atol=1e-5, rtol=1e-5)
    plain = Compose(run_parser(BUNDLE_16, (), {"seed": 0}).get_parsed_content("train#random_transforms"))
    assert all("image_highres" not in sample for sample in plain(dict(data.train_volumes[0])))


def test_the_any_size_targets_compare_it_with_each_sizes_head_seed_by_seed():
    from jnet.tools.sweep.publish import _any_size_checks

    def run(jaccard, seconds):
        return {"jaccard": [jaccard, jaccard], "train_s": seconds}

    runs = {"head@16#0": run(0.40, 20), "head@16#1": run(0.30, 20), "head@32#0": run(0.50, 40), "head@32#1": run(0.52, 40),
            "any@16#0": run(0.396, 45), "any@16#1": run(0.298, 47), "any@32#0": run(0.47, 45), "any@32#1": run(0.49, 47)}
    speed = {f"{v}@{r}": {"eager": {"images_per_s": ips}} for v, r, ips in
             (("head", 16, 1000), ("any", 16, 990), ("head", 32, 500), ("any", 32, 400))}
    rows = _any_size_checks({"runs": runs, "speed": speed})
    assert [(what.split(":")[0], met, numbers.split(" ")[0]) for what, met, numbers in rows if "Jaccard" in what] == [
        ("16x16", True, "-0.003"), ("32x32", False, "-0.030")]  # within a point; 3 points below
    (training,) = [(met, numbers) for what, met, numbers in rows if "training" in what]
    assert training == (False, "46 s per any training vs 30 s per head run (mean over its 4 runs at 16, 32; by size 20 / 40 s): 1.53x")
    assert [met for what, met, _ in rows if "throughput" in what] == [True, False]  # 99 % and 80 % of the head's
