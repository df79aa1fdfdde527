"""The repository's bundles run as a user runs them: ``python -m monai.bundle run`` subprocesses."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
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
    progress_every_s: float | None = None,
) -> float:
    """Run a bundle command from ``bundle_dir`` with its output in ``log_path``; exit with a clear message on
    failure. ``launcher``: e.g. ``["torchrun", "--standalone", "--nproc_per_node=2"]``, which then runs
    ``-m monai.bundle run ...`` in place of the interpreter. ``progress_every_s``: print the latest progress line
    (epoch, loss, validation metric) at that interval while it runs. Returns the wall time in seconds."""
    command = bundle_command(config_files, overrides)
    if launcher:
        command = list(launcher) + command[1:]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        if progress_every_s:
            process = subprocess.Popen(command, cwd=bundle_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace")
            returncode = _follow(process, log, progress_every_s)
        else:
            returncode = subprocess.run(command, cwd=bundle_dir, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if returncode != 0:
        sys.exit(f"ERROR: '{' '.join(command)}' failed (exit {returncode}); see {log_path}")
    return time.perf_counter() - start


# the log lines that say how far a training or evaluation is: ignite's StatsHandler (iteration loss, epoch metrics)
PROGRESS_LINE = re.compile(r"(Epoch[:\[].*|Key metric.*|Got new best metric.*)")


def _follow(process: subprocess.Popen, log, every_s: float) -> int:
    """Copy the process's output to ``log``; every ``every_s`` seconds print its latest progress line (epoch,
    iteration, loss, validation metric), or that it is still starting. Returns the exit code."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            for line in process.stdout:
                lines.put(line)
        finally:  # the end, whatever happened: the loop below never waits for a line that cannot come
            lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    started = last_echo = time.monotonic()
    latest = None
    while True:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            log.write(line)
            match = PROGRESS_LINE.search(line)
            if match:
                latest = match.group(1).strip()
        if time.monotonic() - last_echo >= every_s:
            elapsed = time.monotonic() - started
            print(f"      {elapsed:4.0f} s  {latest or 'starting (reading and caching the volumes)'}", flush=True)
            last_echo = time.monotonic()
    process.stdout.close()
    return process.wait()
