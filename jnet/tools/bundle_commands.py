"""The repository's bundles run as a user runs them: ``python -m monai.bundle run`` subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["REPO_BUNDLES", "repo_bundle", "bundle_command", "run_bundle_command"]

REPO_BUNDLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bundles")


def repo_bundle(name: str) -> str:
    """The folder of the generated bundle ``name`` in this repository (``bundles/<name>``)."""
    return os.path.join(REPO_BUNDLES, name)


def bundle_command(config_files: Sequence[str], overrides: dict[str, object]) -> list[str]:
    """``python -m monai.bundle run`` with ``config_files`` merged in order, as a user types it in the bundle folder."""
    files = "[" + ",".join(f"'{f}'" for f in config_files) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files]
    command += ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def run_bundle_command(
    bundle_dir: str,
    config_files: Sequence[str],
    overrides: dict[str, object],
    log_path: str,
    launcher: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> float:
    """Run a bundle command from ``bundle_dir`` with its output in ``log_path``; exit with a clear message on
    failure. ``launcher``: e.g. ``["torchrun", "--standalone", "--nproc_per_node=2"]``, which then runs
    ``-m monai.bundle run ...`` in place of the interpreter. Returns the wall time in seconds."""
    command = bundle_command(config_files, overrides)
    if launcher:
        command = list(launcher) + command[1:]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        result = subprocess.run(command, cwd=bundle_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        sys.exit(f"ERROR: '{' '.join(command)}' failed (exit {result.returncode}); see {log_path}")
    return time.perf_counter() - start
