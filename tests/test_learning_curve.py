"""``python -m jnet learning_curve``: the usable-model rule on hand-made curves, the validation lines of a training log,
the README's "How long to train" section from a small JSON, and one short real run of a bundle's train.json."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from jnet.bundles.render import generate_bundles, training_time_section
from jnet.errors import InputError
from jnet.tools.learning_curve import measure_learning_curves, parse_validations, rederive_usable, usable_epoch, usable_rule

pytestmark = pytest.mark.timeout(300)

CLASSES = ["peripheral zone", "transition zone"]


def _curve(points):
    """``[(epoch, mean, [class Dice, ...]), ...]`` as a learning curve."""
    return [{"epoch": e, "val_mean_dice": m, "dice_per_class": dict(zip(CLASSES, d))} for e, m, d in points]


def test_usable_epoch_is_the_first_epoch_with_every_class_and_90_percent_of_the_best():
    curve = _curve([
        (2, 0.10, [0.0, 0.20]),
        (4, 0.85, [0.0, 0.85]),  # >= 90 % of the best (0.81) but peripheral zone still 0: not usable
        (6, 0.83, [0.05, 0.80]),  # >= 0.81, peripheral zone non-zero but under the 0.1 floor: not usable
        (8, 0.80, [0.1, 0.70]),  # every class, below 0.81
        (10, 0.82, [0.2, 0.72]),  # the first epoch with both
        (12, 0.90, [0.4, 0.80]),
    ])
    assert usable_epoch(curve) == 10
    assert usable_epoch(curve, fraction=0.95) == 12
    assert usable_epoch(curve, fraction=0.5) == 8
    assert usable_epoch(curve, min_class_dice=0.0) == 6  # the floor at "non-zero"


@pytest.mark.parametrize("points", [
    [(1, 0.0, [0.0, 0.0]), (2, 0.0, [0.0, 0.0])],  # all-background masks every time
    [(1, 0.30, [0.0, 0.6]), (2, 0.33, [0.0, 0.66])],  # one class never found
    [(1, 0.30, [0.01, 0.6]), (2, 0.33, [0.0, 0.66])],  # one class only as stray voxels (the synthetic prostate's PZ)
    [(1, float("nan"), [float("nan"), float("nan")])],
])
def test_usable_epoch_not_reached(points):
    assert usable_epoch(_curve(points)) is None


def test_the_rule_is_stated_with_its_fraction():
    assert "at least 0.1" in usable_rule() and "90%" in usable_rule() and "not reached" in usable_rule()
    assert "at least 0.2" in usable_rule(min_class_dice=0.2) and "80%" in usable_rule(fraction=0.8)


LOG = """\
2026-12-03 09:57:41,701 - INFO - Epoch: 2/4, Iter: 3/3 -- train_loss: 8.4539
2026-12-03 09:57:50,459 - INFO - Epoch[4] Metrics -- val_dice_peripheral_zone: 0.2500 val_dice_transition_zone: 0.7000 val_mean_dice: 0.4750 val_mean_jaccard: 0.3000
2026-12-03 09:57:50,460 - INFO - Key metric: val_mean_dice best value: 0.475 at epoch: 4
2026-12-03 09:57:40,459 - INFO - Epoch[2] Metrics -- val_dice_peripheral_zone: nan val_dice_transition_zone: 1.2e-03 val_mean_dice: 0.0012 val_mean_jaccard: 0.0006
"""


def test_parse_validations_reads_every_validation_line_in_epoch_order():
    curve = parse_validations(LOG, CLASSES)
    assert [p["epoch"] for p in curve] == [2, 4]
    assert curve[1] == {"epoch": 4, "val_mean_dice": 0.475, "dice_per_class": {"peripheral zone": 0.25, "transition zone": 0.7}}
    assert curve[0]["dice_per_class"]["transition zone"] == 0.0012 and math.isnan(curve[0]["dice_per_class"]["peripheral zone"])
    with pytest.raises(InputError, match="lacks val_dice_central_gland"):
        parse_validations(LOG, CLASSES + ["central gland"])


def _report(bundles):
    return {
        "rule": usable_rule(), "metric": "val_mean_dice: the key metric", "data": "the synthetic default",
        "epoch_meaning": "an epoch of one run", "calls": [{"command": "python -m jnet learning_curve --epochs 40", "note": "a shared CPU"}],
        "bundles": bundles,
    }


def _entry(usable, curve):
    return {
        "settings": {"epochs": curve[-1]["epoch"], "val_interval": 1}, "usable_epoch": usable,
        "at_usable": next((p for p in curve if p["epoch"] == usable), None), "last": curve[-1],
        "best": max(curve, key=lambda p: p["val_mean_dice"]), "curve": curve, "train_s": 12.0, "machine": "x86_64, 2 cores",
        "command": "cd bundles/x && python -m monai.bundle run", "call": "python -m jnet learning_curve --epochs 40",
    }


def test_readme_section_from_a_small_json(tmp_path):
    """The number of the JSON for the bundle it has, "Not measured" for the one it lacks: through ``jnet generate``."""
    repo = tmp_path / "repo"
    configs = str(repo / "configs")
    shutil.copytree(os.path.join(REPO, "configs"), configs)
    matrix = json.load(open(os.path.join(configs, "matrix.json")))
    json.dump({**matrix, "resolutions": [16]}, open(os.path.join(configs, "matrix.json"), "w"))
    curve = _curve([(e, 0.1 * e, [0.05 * e, 0.15 * e]) for e in range(1, 8)] + [(8, 0.4321, [0.4, 0.4642])])
    os.makedirs(repo / "docs" / "results")
    json.dump(_report({"prostate_mri_lowres_16": _entry(7, curve)}), open(repo / "docs" / "results" / "learning_curve.json", "w"))
    generate_bundles(configs, str(repo / "bundles"))

    readme = open(repo / "bundles" / "prostate_mri_lowres_16" / "docs" / "README.md").read()
    section = readme.split("## How long to train")[1].split("\n## ")[0]
    assert "Epochs for a usable model: **7 epochs** (`val_mean_dice` 0.700 (peripheral zone 0.350, transition zone 1.050) at epoch 7)" in section
    assert "At the last epoch (8): `val_mean_dice` 0.432" in section and "a shared CPU" in section
    assert usable_rule() in section and "all-background masks" in section and "Not measured" not in section
    other = open(repo / "bundles" / "brats_mri_lowres_16" / "docs" / "README.md").read()
    other_section = other.split("## How long to train")[1].split("\n## ")[0]
    assert "Not measured" in other_section and "all-background masks" in other_section
    assert "epochs**" not in other_section and "0.432" not in other_section


def test_readme_section_when_the_rule_is_not_reached():
    curve = _curve([(1, 0.0, [0.0, 0.0]), (2, 0.3, [0.0, 0.6])])
    section = training_time_section("b", _report({"b": _entry(None, curve)}))
    assert "**not reached in 2 epochs**" in section and "At the last epoch (2): `val_mean_dice` 0.300" in section
    assert "Not measured" in training_time_section("c", _report({"b": _entry(None, curve)}))


def test_rederive_applies_the_current_rule_to_the_stored_curves(tmp_path):
    """A stored entry derived with another rule (here "non-zero"): derived again from its curve, without training."""
    stale = _curve([(2, 0.30, [0.01, 0.59]), (4, 0.32, [0.0, 0.64])])
    fine = _curve([(2, 0.10, [0.0, 0.2]), (4, 0.60, [0.5, 0.7]), (6, 0.62, [0.5, 0.74])])
    out_file = str(tmp_path / "learning_curve.json")
    json.dump(_report({"prostate_mri_lowres_16": _entry(2, stale), "prostate_mri_lowres_32": _entry(None, fine)}), open(out_file, "w"))
    report = rederive_usable(out_file, os.path.join(REPO, "configs"))
    assert report == json.load(open(out_file)) and report["rule"] == usable_rule()
    assert report["bundles"]["prostate_mri_lowres_16"]["usable_epoch"] is None and report["bundles"]["prostate_mri_lowres_16"]["at_usable"] is None
    assert report["bundles"]["prostate_mri_lowres_32"]["usable_epoch"] == 4
    assert report["bundles"]["prostate_mri_lowres_32"]["at_usable"] == fine[1] and report["bundles"]["prostate_mri_lowres_32"]["curve"] == fine
    assert report["calls"][-1]["command"].startswith("python -m jnet learning_curve --rederive True")


def test_unknown_bundle_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jnet", "learning_curve", "--bundles", "nope", "--work_dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "ERROR: unknown bundle(s) nope; known: " + ", ".join(f"{d}_mri_lowres_{r}" for d in ("prostate", "brats") for r in (16, 32, 64, 128, "any")) + "."
    ]


def test_a_short_real_run_writes_the_curve(tmp_path):
    """One bundle, 2 epochs on tiny synthetic data through ``monai.bundle run``: a curve of 2 validations whose best is
    the best metric the bundle's own BestModelSaver recorded, per-class Dice consistent with the mean."""
    out_file, work = str(tmp_path / "learning_curve.json"), str(tmp_path / "work")
    report = measure_learning_curves(["prostate_mri_lowres_16"], epochs=2, val_interval=1, num_train=4, work_dir=work, out_file=out_file, small=True)
    assert report == json.load(open(out_file))
    entry = report["bundles"]["prostate_mri_lowres_16"]
    assert [p["epoch"] for p in entry["curve"]] == [1, 2] and entry["last"] == entry["curve"][-1]
    assert entry["command"].startswith("cd bundles/prostate_mri_lowres_16 && python -m monai.bundle run --config_file")
    assert entry["settings"]["epochs"] == 2 and report["calls"][-1]["wall_s"] > 0
    for point in entry["curve"]:
        assert 0.0 <= point["val_mean_dice"] <= 1.0 and list(point["dice_per_class"]) == CLASSES
        per_class = list(point["dice_per_class"].values())
        if all(d == d for d in per_class):  # one validation volume: the mean of the classes is the key metric
            assert point["val_mean_dice"] == pytest.approx(sum(per_class) / len(per_class), abs=2e-4)
    record = json.load(open(os.path.join(work, "prostate_mri_lowres_16", "models", "model_training.json")))
    assert entry["best"]["val_mean_dice"] == pytest.approx(record["best_metric"], abs=1e-4)
    assert entry["best"]["epoch"] == record["saved_after_epoch"]
    assert entry["usable_epoch"] == usable_epoch(entry["curve"])
    assert "| prostate_mri_lowres_16 | 2 | 1 |" in open(os.path.join(work, "learning_curve.md")).read()
