import json
import os
import shutil

import pytest
import torch

from conftest import BUNDLE_16, REPO
from jnet.bundles.render import provenance
from jnet.tools.sweep import run_sweep
from jnet.tools.sweep.publish import ESTIMATES_BEGIN, ESTIMATES_END, _update_jetson_estimates, publish_results, target_checks

pytestmark = pytest.mark.timeout(900)


def test_sweep_runs_end_to_end_and_resumes(tiny_dataset, tmp_path):
    work = str(tmp_path / "sweep")
    kwargs = dict(
        work_dir=work, dataset_dir=tiny_dataset, resolutions=(16, 32), seeds=1, iterations=3, batch_size=2,
        features=4, reference=False, speed_budget_s=0.05,
    )
    results = run_sweep(**kwargs)
    assert set(results["runs"]) == {f"{v}@{r}#0" for v in ("baseline", "bilinear", "head", "head_paper") for r in (16, 32)}
    for run in results["runs"].values():
        assert len(run["jaccard"]) == 2 and all(0.0 <= v <= 1.0 or v != v for v in run["jaccard"])  # PZ, TZ (or NaN)
    head = results["speed"]["head@16"]
    assert head["added_parameters"] == 180 and results["speed"]["bilinear@16"]["added_parameters"] == 0
    assert head["eager"]["images_per_s"] > 0 and head["onnxruntime"]["images_per_s"] > 0
    saved = json.load(open(os.path.join(work, "sweep.json")))
    assert saved["summary"]["head@32"]["seeds"] == 1
    table = open(os.path.join(work, "sweep.md")).read()
    assert "| 16x16 | head |" in table and "| 32x32 | head_paper |" in table
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
    for c, mean in enumerate(run["dice"]):
        values = [v["dice"][c] for v in run["per_volume"].values() if v["dice"][c] == v["dice"][c]]
        assert mean == pytest.approx(sum(values) / len(values)) if values else mean != mean
    assert saved["wall_s"] > 0

    # publishing: docs/results.md with both figures, the head's figures as eval_metrics, regenerated bundles
    configs, docs, bundles = tmp_path / "configs", tmp_path / "docs", tmp_path / "bundles"
    shutil.copytree(os.path.join(REPO, "configs"), configs)
    docs.mkdir()
    published = publish_results(work, None, str(docs), str(configs), str(bundles))
    page = (docs / "results.md").read_text()
    assert "python -m jnet sweep --dataset prostate --dataset_dir" in page and saved["config"]["machine"] in page
    # the command on the page is the one that reproduces this sweep (the options away from the defaults)
    assert f'--dataset_dir {tiny_dataset} --resolutions "[16, 32]" --seeds 1 --reference False --iterations 3 --batch_size 2 --features 4`' in page
    assert "| 16x16 | head |" in page and "![examples](results/examples.png)" in page
    assert (docs / "results" / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert published["eval_metrics_from_sweep"] == ["prostate_mri_lowres_16", "prostate_mri_lowres_32"]
    metadata = json.load(open(bundles / "prostate_mri_lowres_16" / "configs" / "metadata.json"))
    summary = saved["summary"]["head@16"]
    assert metadata["eval_metrics"]["mean_jaccard"] == round(summary["jaccard_mean"], 4)
    assert metadata["eval_metrics"]["transition_zone_dice"] == round(summary["dice_per_class"][1], 4)
    assert "python -m jnet sweep --dataset prostate --dataset_dir" in metadata["description"]
    brats = json.load(open(bundles / "brats_mri_lowres_16" / "configs" / "metadata.json"))
    kept = json.load(open(os.path.join(REPO, "configs", "eval_metrics.json")))
    assert brats["eval_metrics"] == kept["brats_mri_lowres_16"]  # not in this sweep: its figures and source kept
    assert provenance("brats_mri_lowres_16", kept) in brats["description"]
    assert "] python -m jnet sweep --dataset prostate --dataset_dir" in (docs / "bundles.md").read_text()  # the tiny sweep is a source


def _summary(head: float, rival: float, std: float) -> dict:
    entry = lambda mean: {"jaccard_mean": mean, "jaccard_std": std, "seeds": 3}  # noqa: E731
    return {"head@16": entry(head), "baseline@16": entry(rival), "bilinear@16": entry(rival - 0.1)}


def _speed(images_per_s: float) -> dict:
    return {runtime: {"images_per_s": images_per_s} for runtime in ("eager", "onnxruntime")}


def test_targets_need_a_margin_larger_than_the_seed_spread():
    checks = dict((what, met) for what, met, _ in target_checks({"summary": _summary(0.50, 0.45, 0.04), "speed": {}}))
    assert checks["16x16: head beats baseline in mean foreground Jaccard by more than the seed std"] is True
    checks = dict((what, met) for what, met, _ in target_checks({"summary": _summary(0.50, 0.47, 0.04), "speed": {}}))
    assert checks["16x16: head beats baseline in mean foreground Jaccard by more than the seed std"] is False
    assert checks["16x16: head beats bilinear in mean foreground Jaccard by more than the seed std"] is True
    speed = {"head@16": _speed(2000.0), "reference@256": _speed(99.0)}
    checks = target_checks({"summary": {}, "speed": speed})
    assert [met for _, met, _ in checks] == [True, True] and "20x" in checks[0][2]
    speed["reference@256"] = _speed(101.0)
    assert [met for _, met, _ in target_checks({"summary": {}, "speed": speed})] == [False, False]


def test_cost_targets_and_jetson_estimates_from_a_bench_report(tmp_path):
    def variant(added, share, ort_b1, eager_b1, macs):
        shares = dict.fromkeys(("eager_images_per_s_b1", "eager_images_per_s", "onnxruntime_images_per_s_b1", "onnxruntime_images_per_s"), share)
        return {"head": {"added_parameters": added, "share_of_bilinear_throughput": shares, "macs": macs,
                         "onnxruntime": {"images_per_s_b1": ort_b1}, "eager": {"images_per_s_b1": eager_b1},
                         "jetson_estimate_images_per_s": {"jetson_nano": 4.72e10 / (2 * macs), "jetson_orin_nano": 2.56e11 / (2 * macs)}}}

    bench = {"machine": "test machine", "jetson_assumption": "10 %", "bundles": {
        "prostate_mri_lowres_16": variant(180, 0.9, 3000.0, 600.0, 14e6), "prostate_mri_lowres_128": variant(45, 0.74, 100.0, 70.0, 1.3e9)}}
    checks = {what: (met, numbers) for what, met, numbers in target_checks({"summary": {}, "speed": {}}, bench)}
    assert checks["the head adds at most 200 parameters in every bundle"] == (True, "largest: 180 (prostate_mri_lowres_16)")
    met, numbers = checks["every bundle keeps >= 75% of the bilinear-output throughput (b1, b32, eager, ONNX Runtime)"]
    assert not met and numbers.startswith("lowest: 74% (prostate_mri_lowres_128")
    assert checks["prostate_mri_lowres_16: ONNX Runtime batch 1 >= 1.5x PyTorch eager"] == (True, "3000 vs 600 images/s: 5.0x")
    page = tmp_path / "jetson.md"
    page.write_text(f"before\n{ESTIMATES_BEGIN}\nold\n{ESTIMATES_END}\nafter\n")
    _update_jetson_estimates(bench, str(page))
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith(f"{ESTIMATES_END}\nafter\n") and "old" not in text
    assert "| prostate_mri_lowres_16 | 14.0 | 1686 | 9143 |" in text
    assert "| prostate_mri_lowres_128 | 1300.0 | 18 **(under 20)** | 98 |" in text


def test_a_cache_from_other_preprocessing_is_refused(tiny_dataset, tmp_path, monkeypatch):
    """The sweep's slice cache is tied to its data and to the pre-processing code: a cache made by another
    version is refused with the file named, never silently mixed with new runs."""
    from jnet.errors import InputError
    from jnet.tools.sweep import data as sweep_data

    cache = str(tmp_path / "slices.pt")
    first = sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3)
    again = sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3)  # read back, same key
    assert torch.equal(first.train_images, again.train_images) and first.val_names == again.val_names
    with pytest.raises(InputError, match=r"slices\.pt: slices cached from other data, another train\.json or an older"):
        sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=2)  # other folds: other slices
    monkeypatch.setattr(sweep_data, "cache_key", lambda *args: "pre-processing of another version")
    with pytest.raises(InputError, match="use a new --work_dir"):
        sweep_data.load_sweep_data(BUNDLE_16, tiny_dataset, cache, num_folds=3)
