import json
import os
import re

import pytest

from conftest import BUNDLES, REPO
from jnet.bundlegen import bundle_specs, check_bundles


def test_committed_bundles_match_the_generator():
    differences = check_bundles(os.path.join(REPO, "configs"), BUNDLES, os.path.join(REPO, "docs", "bundles.md"))
    assert differences == [], "bundles/ is out of date: run `make generate`\n" + "\n".join(differences)


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
    assert spec.input_size * 2 ** spec.head_levels == 256
