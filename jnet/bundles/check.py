"""The generated-files check: what in ``bundles/`` differs from a fresh rendering of ``configs/``."""

from __future__ import annotations

import filecmp
import os
import tempfile

from .render import generate_bundles

__all__ = ["check_bundles", "tree_differences"]


def tree_differences(expected: str, actual: str, ignore: tuple[str, ...] = ("models", "eval")) -> list[str]:
    differences = []
    compare = filecmp.dircmp(expected, actual, ignore=list(ignore))
    differences += [os.path.join(actual, n) + " is missing" for n in compare.left_only]
    differences += [os.path.join(actual, n) + " is not generated" for n in compare.right_only]
    _, mismatch, errors = filecmp.cmpfiles(expected, actual, compare.common_files, shallow=False)
    differences += [os.path.join(actual, n) + " differs" for n in mismatch + errors]
    for sub in compare.common_dirs:
        differences += tree_differences(os.path.join(expected, sub), os.path.join(actual, sub), ignore)
    return differences


def check_bundles(configs_dir: str = "configs", bundles_dir: str = "bundles") -> list[str]:
    """What in ``bundles_dir`` differs from a fresh generation (empty when in sync)."""
    with tempfile.TemporaryDirectory() as fresh:
        names = generate_bundles(configs_dir, fresh)
        differences = []
        for name in names:
            if not os.path.isdir(os.path.join(bundles_dir, name)):
                differences.append(f"{os.path.join(bundles_dir, name)} is missing")
                continue
            differences += tree_differences(os.path.join(fresh, name), os.path.join(bundles_dir, name))
        extra = sorted(set(os.listdir(bundles_dir)) - set(names)) if os.path.isdir(bundles_dir) else []
        differences += [f"{os.path.join(bundles_dir, n)} is not in the matrix" for n in extra]
    return differences
