import json
import os

import pytest

from jnet.sweep import run_sweep

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
