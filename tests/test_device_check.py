"""The GPU device check (issue 19) runs its steps here on the CPU: the plumbing, not a GPU's figures."""

import json
import os

import pytest

from jnet.tools.device_check import device_check


def test_without_cuda_the_device_check_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: make device-check runs the check itself")
    with pytest.raises(SystemExit, match="no CUDA device visible to torch: the device check runs on a GPU machine"):
        device_check(str(tmp_path), "cuda")


def test_the_device_check_steps_run_and_compare_the_masks_with_the_cpus(tmp_path):
    """On the CPU as "the device": training, evaluation, inference through monai.bundle run, the masks compared with
    a second inference (identical: the same device), eager images/s in fp32 and bfloat16 autocast, the JSON and table."""
    report = device_check(str(tmp_path), "cpu", bundles=("prostate_mri_lowres_16",), overrides={"features": 4, "batch_size": 2}, budget_s=0.1)
    saved = json.load(open(tmp_path / "device_check.json"))
    assert saved["device"] == "cpu" and saved["amp"] is False and "not a GPU" in saved["device_name"]
    result = saved["bundles"]["prostate_mri_lowres_16"]
    assert result["masks_vs_cpu"] == {**result["masks_vs_cpu"], "same_files": True, "min_voxel_agreement": 1.0, "affines_equal": True}
    assert result["masks_vs_cpu"]["masks"] == 2  # the two test volumes
    assert result["val_mean_dice"] is not None and 0.0 <= result["val_mean_dice"] <= 1.0
    assert set(result["eager_images_per_s"]) == {"fp32_b1", "fp32_b32", "amp_b1", "amp_b32"} and min(result["eager_images_per_s"].values()) > 0
    assert result["input_shape"] == [2, 16, 16] and report["bundles"] == saved["bundles"]
    table = open(tmp_path / "device_check.md").read()
    assert "| prostate_mri_lowres_16 |" in table and "1.00000 (2 masks)" in table


def test_the_results_page_says_the_gpu_path_is_untested_until_a_report_is_there(tmp_path):
    from jnet.tools.sweep.publish import gpu_section

    assert "**Untested.**" in gpu_section(str(tmp_path))
    report = {"device_name": "NVIDIA H200 (CUDA 13.0, torch 2.11.0)", "command": "make device-check", "date": "2026-12-03", "bundles": {
        "prostate_mri_lowres_32": {"seconds": {"train": 12.3, "evaluate": 8.0, "inference": 7.1}, "val_mean_dice": 0.25,
                                   "masks_vs_cpu": {"same_files": True, "masks": 2, "min_voxel_agreement": 0.99991, "affines_equal": True},
                                   "eager_images_per_s": {"fp32_b1": 800.2, "fp32_b32": 20000.0, "amp_b1": 700.0, "amp_b32": 31000.0}}}}
    json.dump(report, open(tmp_path / "device_check.json", "w"))
    section = gpu_section(str(tmp_path))
    assert "Untested" not in section and "Device check on NVIDIA H200 (CUDA 13.0, torch 2.11.0)" in section
    assert "| prostate_mri_lowres_32 | 12.3 | 8.0 | 7.1 | 0.250 | 0.99991 (2 masks) | True | 800 | 20000 | 700 | 31000 |" in section


def test_a_report_is_written_as_json_and_its_table(tmp_path, capsys):
    from jnet.tools.reports import write_report

    assert write_report(str(tmp_path / "out"), "bench", {"a": 1}, "| a |\n") == "| a |\n"
    assert json.load(open(tmp_path / "out" / "bench.json")) == {"a": 1} and open(tmp_path / "out" / "bench.md").read() == "| a |\n"
    assert capsys.readouterr().out == "| a |\n\n"
