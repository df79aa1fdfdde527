import json
import os
import re
import shutil

import pytest

from conftest import BUNDLES, REPO
from jnet.bundles.check import check_bundles
from jnet.bundles.matrix import bundle_specs, head_levels
from jnet.bundles.parse import bundle_parser
from jnet.bundles.render import SLOT, generate_bundles
from jnet.tools.bench.table import check_bundles_table


def test_committed_bundles_match_the_generator():
    differences = check_bundles(os.path.join(REPO, "configs"), BUNDLES)
    differences += check_bundles_table(os.path.join(REPO, "configs"), BUNDLES, os.path.join(REPO, "docs", "bundles.md"))
    assert differences == [], "bundles/ is out of date: run `make generate`\n" + "\n".join(differences)


def test_head_levels_from_input_size():
    assert [head_levels(r) for r in (16, 32, 64, 128, 256)] == [4, 3, 2, 1, 0]
    assert head_levels(8, 512) == 6
    for bad in (24, 48, 300, 0):
        with pytest.raises(ValueError, match=f"input size {bad} must divide 256 by a power of two"):
            head_levels(bad)


def _configs_copy(tmp_path):
    configs = str(tmp_path / "configs")
    shutil.copytree(os.path.join(REPO, "configs"), configs)
    return configs


def _edit_json(path, edit):
    content = json.load(open(path))
    edit(content)
    json.dump(content, open(path, "w"))


def test_every_dataset_profile_fills_the_same_neutral_slots():
    """The templates hold no dataset's values: prostate states its grid, loss and activation as BraTS does."""
    templates = {name: json.load(open(os.path.join(REPO, "configs", "templates", name))) for name in ("train.json", "inference.json")}
    slots = {key for content in templates.values() for key, value in content.items() if value == SLOT}
    assert {"grid_transform", "loss", "post_activation", "label_transform", "val_discretize", "input_size", "head_levels"} <= slots
    for dataset in ("prostate", "brats"):
        config = json.load(open(os.path.join(REPO, "configs", "datasets", f"{dataset}.json")))["config"]
        assert set(config) == slots - {"input_size", "output_size", "head_levels"}, dataset
    prostate = json.load(open(os.path.join(REPO, "configs", "datasets", "prostate.json")))["config"]
    assert prostate["grid_transform"]["grid"] == "resize" and prostate["post_activation"]["activation"] == "softmax"
    assert prostate["loss"]["loss"]["_target_"] == "jnet.losses.SoftmaxDiceCELoss"  # MONAI's DiceCELoss(softmax=True) values, fused


def test_a_profile_key_that_fills_no_slot_is_refused(tmp_path):
    configs = _configs_copy(tmp_path)
    _edit_json(os.path.join(configs, "datasets", "prostate.json"), lambda p: p["config"].update(lables_values=[0, 1, 2]))
    with pytest.raises(ValueError, match=r"configs/datasets/prostate.json: config key\(s\) lables_values fill no slot"):
        generate_bundles(configs, str(tmp_path / "bundles"))


def test_a_slot_that_the_profile_leaves_empty_is_refused(tmp_path):
    configs = _configs_copy(tmp_path)
    _edit_json(os.path.join(configs, "datasets", "brats.json"), lambda p: p["config"].pop("loss"))
    with pytest.raises(ValueError, match=r"configs/datasets/brats.json: no value for the slot\(s\) loss of configs/templates/train.json"):
        generate_bundles(configs, str(tmp_path / "bundles"))


@pytest.mark.parametrize("section,expected", [
    ("train", {"ignite.contrib.handlers.ProgressBar": "main", "StatsHandler": "log", "TensorBoardStatsHandler": "main"}),
    ("validate", {"StatsHandler": "log", "TensorBoardStatsHandler": "main", "jnet.handlers.BestModelSaver": "main"}),
])
def test_main_process_handlers_are_disabled_by_name_on_other_ranks(section, expected):
    """multi_gpu_train.json names the main process (`is_main_process`); no handler is disabled by list position, so
    reordering train.json's handlers keeps each handler's own condition."""
    multi = json.load(open(os.path.join(BUNDLES, "prostate_mri_lowres_16", "configs", "multi_gpu_train.json")))
    assert not [key for key in multi if "#handlers#" in key] and multi["is_main_process"] == "$dist.get_rank() == 0"
    for main_process, log_all_ranks in ((True, False), (False, False), (False, True)):
        parser = bundle_parser(os.path.join(BUNDLES, "prostate_mri_lowres_16"))
        parser["is_main_process"], parser["log_all_ranks"] = main_process, log_all_ranks
        handlers = parser[f"{section}#handlers"]
        for index, handler in enumerate(handlers):
            disabled = parser.get_parsed_content(f"{section}#handlers#{index}#_disabled_") if "_disabled_" in handler else False
            kind = expected.get(handler["_target_"])
            runs = kind is None or main_process or (kind == "log" and log_all_ranks)  # None: every process
            assert disabled is (not runs), (handler["_target_"], main_process, log_all_ranks)
        assert {h["_target_"] for h in handlers if "_disabled_" in h} == set(expected)


@pytest.mark.parametrize("spec", list(bundle_specs(os.path.join(REPO, "configs"))), ids=lambda s: s.name)
def test_bundle_is_self_contained(spec):
    bundle = os.path.join(BUNDLES, spec.name)
    for name in ("configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
                 "configs/logging.conf", "docs/README.md", "docs/data_license.txt", "LICENSE", "large_files.yml"):
        assert os.path.isfile(os.path.join(bundle, name)), name
    for root, folders, files in os.walk(bundle):
        folders[:] = [f for f in folders if f not in ("models", "eval")]  # outputs of runs, ignored by git
        for name in files:
            text = open(os.path.join(root, name)).read()
            assert "../" not in text and "/work/" not in text, f"{name} points outside the bundle"
    meta = json.load(open(os.path.join(bundle, "configs", "metadata.json")))
    assert re.match(r"^\d+\.\d+\.\d+$", meta["required_packages_version"]["jnet-lowres"])
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["spatial_shape"] == [spec.input_size] * 2
    assert meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] == [256, 256]
    train = json.load(open(os.path.join(bundle, "configs", "train.json")))
    assert train["input_size"] == spec.input_size and train["head_levels"] == spec.head_levels
    assert min(spec.sizes or (spec.input_size,)) * 2 ** spec.head_levels == 256  # a switchable head: all levels, for its smallest size


def test_the_any_bundle_readme_table_reads_only_its_own_sweep_runs(tmp_path):
    """The `_any` bundle README's quality/speed table: from a sweep JSON whose any runs this bundle trained (the
    command names it), each size's mean over seeds beside the head networks, the paired difference, images/s."""
    from jnet.bundles.render import any_size_table

    spec = next(s for s in bundle_specs(os.path.join(REPO, "configs")) if s.name == "prostate_mri_lowres_any")
    (tmp_path / "configs").mkdir()
    assert any_size_table(spec, str(tmp_path / "configs")).startswith("Not measured")
    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    command = "cd bundles/prostate_mri_lowres_any && python -m monai.bundle run --config_file configs/train.json --epochs 70 --seed 0"
    runs = {"any@16#0": {"jaccard": [0.2, 0.4], "train_s": 70.2, "command": command},
            "any@16#1": {"jaccard": [0.4, 0.6], "train_s": 71.0, "command": command},
            "head@16#0": {"jaccard": [0.3, 0.5], "train_s": 50.0}, "head@16#1": {"jaccard": [0.1, 0.3], "train_s": 60.0}}
    speed = {"any@16": {"eager": {"images_per_s": 990.4}}, "head@16": {"eager": {"images_per_s": 1001.0}}}
    config = {"variants": ["head", "any"], "train_volumes": 12, "held_out_volumes": 4, "synthetic": True, "dataset": "prostate",
              "epochs": 40, "machine": "x86_64, 2 cores"}
    json.dump({"runs": runs, "speed": speed, "config": config}, open(results / "sweep_any.json", "w"))
    other = {**runs, "any@16#0": {**runs["any@16#0"], "command": command.replace("prostate_mri_lowres_any", "brats_mri_lowres_any")}}
    json.dump({"runs": {k: v for k, v in other.items() if k != "any@16#1"}, "speed": speed, "config": config}, open(results / "sweep_brats_any.json", "w"))
    table = any_size_table(spec, str(tmp_path / "configs"))
    # jaccard lists are per foreground class: the run's mean foreground Jaccard is their mean
    assert "| 16x16 | 0.400 (2 seeds) | 0.300 (2 seeds) | +0.100 (2) | 990 | 1001 |" in table
    assert "`docs/results/sweep_any.json`" in table and "sweep_brats_any" not in table and "70, 71 s" in table
    assert "40 epochs per per-size network and 70 for this one" in table and "the per-size head runs 55 s on average" in table


def test_an_overlay_sets_ids_and_puts_a_list_in_front_of_another():
    from jnet.bundles.render import merge_overlay

    config = {"operating_size": 32, "validate": {"handlers": [{"_target_": "StatsHandler"}], "inferer": {"batch": 4}}}
    merged = merge_overlay(config, {"validate#inferer": {"batch": 8}, "+validate#handlers": [{"_target_": "First"}], "new_key": 1}, "overlay.json")
    assert [h["_target_"] for h in merged["validate"]["handlers"]] == ["First", "StatsHandler"]
    assert merged["validate"]["inferer"] == {"batch": 8} and list(merged) == ["operating_size", "new_key", "validate"]
    assert [h["_target_"] for h in config["validate"]["handlers"]] == ["StatsHandler"]  # the template is left as it was
    with pytest.raises(ValueError, match=r"overlay.json: \+validate#inferer names no list"):
        merge_overlay(config, {"+validate#inferer": [{}]}, "overlay.json")
