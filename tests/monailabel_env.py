"""The MONAI Label virtual environment: where it lives, and creating it (``make monailabel-env``).

MONAI Label runs in an environment of its own, pinned by ``tests/monailabel_requirements.txt`` (monailabel 0.8.5
needs MONAI 1.5.x and a torchvision that imports beside its torch). It is cached outside the clone, under
``$XDG_CACHE_HOME`` (default ``~/.cache``) as ``jnet-monailabel-venv-<key>``, the key being a hash of the pins file
and the project's ``install_requires`` in ``setup.cfg``; ``JNET_MONAILABEL_VENV`` names another place. The first
install takes about 4 minutes here and 8 GB; environments of older keys are deleted.

This project is installed into it in editable mode (its own dependencies, constrained by the pins); the server test
also puts the clone first on ``PYTHONPATH``, so the bundles' ``_target_``s always load the clone under test.

If the package index cannot be reached, creating the environment writes the reason to ``<venv>.unavailable`` and
exits 0, and ``tests/test_monailabel.py`` skips with that reason; any other install failure exits non-zero.

Usage::

    python tests/monailabel_env.py          # create unless present, print its path
    python tests/monailabel_env.py --path   # print its path only
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PINS = REPO / "tests" / "monailabel_requirements.txt"
VENV_PREFIX = "jnet-monailabel-venv-"
ENV_VAR = "JNET_MONAILABEL_VENV"
STAMP = ".jnet-installed"


def env_key() -> str:
    """First 12 hex digits of the SHA-1 of the pins file and this project's ``install_requires`` (setup.cfg)."""
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    requires = setup.get("options", "install_requires", fallback="")
    return hashlib.sha1(PINS.read_bytes() + requires.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME`` or ``~/.cache``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def venv_dir() -> Path:
    """The environment's directory: ``$JNET_MONAILABEL_VENV`` or ``<cache>/jnet-monailabel-venv-<key>``."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else cache_root() / f"{VENV_PREFIX}{env_key()}"


def venv_python(venv: Path) -> Path:
    """The environment's interpreter."""
    return venv / "bin" / "python"


def is_ready(venv: Path) -> bool:
    """True once a complete install has written its stamp."""
    return (venv / STAMP).is_file() and venv_python(venv).is_file()


def unavailable_reason(venv: Path) -> str | None:
    """Why the environment could not be installed here (no network), or None."""
    marker = Path(f"{venv}.unavailable")
    return marker.read_text().strip() if marker.is_file() else None


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _index_reachable(python: Path) -> tuple[bool, str]:
    """Whether pip can reach its package index (one look-up of the package the environment is for)."""
    pin = next(line for line in PINS.read_text().splitlines() if line.startswith("monailabel"))
    with tempfile.TemporaryDirectory() as dest:
        proc = _run([str(python), "-m", "pip", "download", "--no-deps", "--quiet", "--dest", dest, pin])
    return proc.returncode == 0, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def _remove_stale(venv: Path) -> None:
    """Delete environments of older keys in the default cache (each is several GB)."""
    if os.environ.get(ENV_VAR):
        return
    for old in cache_root().glob(f"{VENV_PREFIX}*"):
        if old != venv and old.name != f"{venv.name}.unavailable":
            print(f"removing stale {old}", flush=True)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def create(venv: Path) -> int:
    """Create and fill the environment; 0 on success or when the index is unreachable, 1 on an install failure."""
    if is_ready(venv):
        return 0
    _remove_stale(venv)
    shutil.rmtree(venv, ignore_errors=True)
    Path(f"{venv}.unavailable").unlink(missing_ok=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([sys.executable, "-m", "venv", str(venv)])
    if proc.returncode != 0:
        print(proc.stdout, file=sys.stderr)
        return 1
    python = venv_python(venv)
    steps = [
        # --no-compile: byte-compiling ~8 GB of packages costs minutes of CPU; Python compiles what it imports
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-r", str(PINS)],
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-c", str(PINS), "-e", str(REPO)],
        [str(python), "-c", "import monailabel, monai, torchvision, jnet"],
    ]
    for step in steps:
        proc = _run(step)
        if proc.returncode == 0:
            continue
        print(proc.stdout[-4000:], file=sys.stderr)
        reachable, detail = _index_reachable(python)
        shutil.rmtree(venv, ignore_errors=True)
        if not reachable:
            reason = f"MONAI Label environment not installed: pip cannot download monailabel (no network?): {detail}"
            Path(f"{venv}.unavailable").write_text(reason + "\n")
            print(f"SKIP: {reason}", file=sys.stderr)
            return 0
        print(f"ERROR: installing the MONAI Label environment into {venv} failed (see above)", file=sys.stderr)
        return 1
    (venv / STAMP).write_text(PINS.read_text())
    return 0


def main(argv: list[str]) -> int:
    venv = venv_dir()
    if "--path" in argv:
        print(venv)
        return 0
    status = create(venv)
    print(venv)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
