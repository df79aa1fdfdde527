"""``python -m jnet eval_metrics`` on tiny data: every bundle of a one-resolution matrix trained and evaluated by its
own configs, the figures in the file equal to the evaluation's CSVs, and a second call skipping what is there."""

import csv
import json
import os
import shutil

import pytest

from conftest import REPO
from jnet.bundles.render import generate_bundles
from jnet.tools.eval_metrics import measure_eval_metrics

pytestmark = pytest.mark.timeout(900)


def _class_means(path):
    with open(path) as f:
        return {row["class"]: float(row["mean"]) for row in csv.DictReader(f)}


def test_eval_metrics_measures_every_bundle_of_the_matrix_and_resumes(tmp_path):
    configs = str(tmp_path / "configs")
    shutil.copytree(os.path.join(REPO, "configs"), configs)
    matrix = json.load(open(os.path.join(configs, "matrix.json")))
    matrix.pop("any_size")  # the one-size matrix: no _any bundle either
    json.dump({**matrix, "resolutions": [16]}, open(os.path.join(configs, "matrix.json"), "w"))
    os.remove(os.path.join(configs, "eval_metrics.json"))
    bundles = str(tmp_path / "bundles")
    names = generate_bundles(configs, bundles)
    assert names == ["prostate_mri_lowres_16", "brats_mri_lowres_16"]
    out_file, work = str(tmp_path / "eval_metrics.json"), str(tmp_path / "work")

    results = measure_eval_metrics(configs, bundles, out_file, work, epochs=1, num_train=4, small=True)
    assert results == json.load(open(out_file))
    assert results["_provenance"].startswith("python -m jnet eval_metrics --epochs 1 --num_train 4 --seed 0: synthetic data")
    classes = {"prostate_mri_lowres_16": ["peripheral_zone", "transition_zone"], "brats_mri_lowres_16": ["tc", "wt", "et"]}
    for name, keys in classes.items():
        entry = results[name]
        assert set(entry) == {"mean_dice", "mean_jaccard"} | {f"{k}_{m}" for k in keys for m in ("dice", "jaccard")}
        for metric in ("dice", "jaccard"):  # the file holds what the bundle's own evaluation wrote
            csv_means = _class_means(os.path.join(work, name, "eval", f"val_mean_{metric}_summary.csv"))
            per_class = [entry[f"{k}_{metric}"] for k in keys]
            assert per_class == [round(csv_means[f"class{i}"], 4) for i in range(len(keys))]
            assert entry[f"mean_{metric}"] == pytest.approx(sum(csv_means[f"class{i}"] for i in range(len(keys))) / len(keys), abs=1e-4)
            assert all(0.0 <= v <= 1.0 for v in per_class)
        assert all(entry[f"{k}_jaccard"] <= entry[f"{k}_dice"] for k in keys)

    logs = {name: os.path.getmtime(os.path.join(work, name, "train.log")) for name in names}
    again = measure_eval_metrics(configs, bundles, out_file, work, epochs=1, num_train=4, small=True)
    assert again == results and {n: os.path.getmtime(os.path.join(work, n, "train.log")) for n in names} == logs
