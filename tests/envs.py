"""Virtual environments some tests run in, besides the project's own ``.venv``: where each lives, and creating it
(``make test-envs``, which ``make test`` depends on).

- ``monailabel``: MONAI Label 0.8.5 with MONAI 1.5.1 and a torchvision that imports beside its torch
  (``tests/monailabel_requirements.txt``), this project installed in editable mode; for ``tests/test_monailabel.py``.
  The first install takes about 4 minutes and 8 GB.
- ``py36``: the Jetson Nano's JetPack 4.6 stack for the standalone runner - Python 3.6 with numpy, nibabel < 4 and
  ONNX Runtime < 1.11 (``tests/py36_requirements.txt``); for ``tests/test_standalone.py``. About 15 s and 160 MB.
  Needs a Python 3.6 interpreter (``$JNET_PYTHON36``, else ``python3.6`` on the PATH or under pyenv).

Each is cached outside the clone, under ``$XDG_CACHE_HOME`` (default ``~/.cache``) as ``jnet-<name>-venv-<key>``, the
key being a hash of its pins file (and, for ``monailabel``, of the project's ``install_requires``); environments of
older keys are deleted. ``JNET_<NAME>_VENV`` names another place.

When an environment cannot be made here - the package index is unreachable, or there is no Python 3.6 - the reason
is written to ``<venv>.unavailable``, the command exits 0 and the tests that need it skip with that reason; any
other install failure exits non-zero. ``JNET_REQUIRE_TEST_ENVS`` (comma-separated names, or ``all``) names the
environments that MUST be made - ``.ci/run`` sets it for the ones the project's CI machine can build - and turns
their "cannot be made here" into an error (exit 1), so CI never passes with their tests skipped.

Usage::

    python tests/envs.py                     # create every environment unless present
    python tests/envs.py monailabel --path   # print one environment's path
"""

from __future__ import annotations

import configparser
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAMP = ".jnet-installed"


@dataclass(frozen=True)
class CachedEnv:
    """One cached virtual environment: its pins, the interpreter that creates it, and whether this project goes in."""

    name: str
    pins: Path
    install_project: bool = False
    python_version: str | None = None  # e.g. "3.6": the interpreter to find; None: the one running this script
    pip_first: str | None = None  # a pip to install before the pins (old interpreters ship a pip too old for them)

    def key(self) -> str:
        """First 12 hex digits of the SHA-1 of the pins, comments left out (and of ``install_requires`` when the
        project goes in)."""
        lines = [line.strip() for line in self.pins.read_text().splitlines()]
        content = "\n".join(line for line in lines if line and not line.startswith("#")).encode()
        if self.install_project:
            setup = configparser.ConfigParser()
            setup.read(REPO / "setup.cfg")
            content += setup.get("options", "install_requires", fallback="").encode()
        return hashlib.sha1(content).hexdigest()[:12]

    def path(self) -> Path:
        override = os.environ.get(f"JNET_{self.name.upper()}_VENV")
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return Path(override) if override else cache / f"jnet-{self.name}-venv-{self.key()}"

    def python(self) -> Path:
        return self.path() / "bin" / "python"

    def is_ready(self) -> bool:
        """True once a complete install has written its stamp."""
        return (self.path() / STAMP).is_file() and self.python().is_file()

    def unavailable_reason(self) -> str | None:
        """Why the environment could not be made here, or None."""
        marker = Path(f"{self.path()}.unavailable")
        return marker.read_text().strip() if marker.is_file() else None

    def skip_reason(self) -> str | None:
        """None when ready; else why not, for ``pytest.skip``."""
        if self.is_ready():
            return None
        return self.unavailable_reason() or f"{self.name} environment {self.path()} missing: run `make test-envs`"

    def pinned(self, package: str) -> str:
        return next(line.split("==")[1].strip() for line in self.pins.read_text().splitlines() if line.startswith(f"{package}=="))


ENVS = {
    "monailabel": CachedEnv("monailabel", REPO / "tests" / "monailabel_requirements.txt", install_project=True),
    "py36": CachedEnv("py36", REPO / "tests" / "py36_requirements.txt", python_version="3.6", pip_first="pip==21.3.1"),
}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def find_interpreter(version: str | None) -> str | None:
    """``sys.executable`` for None; else a ``$JNET_PYTHON36``-style override, pyenv's, or ``pythonX.Y`` on the PATH -
    the first that runs (a pyenv shim on the PATH may exist and fail)."""
    if version is None:
        return sys.executable
    override = os.environ.get(f"JNET_PYTHON{version.replace('.', '')}")
    candidates = [override] if override else []
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")), reverse=True)
    candidates += [shutil.which(f"python{version}")]
    for candidate in candidates:
        if candidate and shutil.which(candidate) and subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return candidate
    return None


def _index_reachable(python: Path, env: CachedEnv) -> tuple[bool, str]:
    """Whether pip can reach its package index (one look-up of the first pinned package)."""
    pin = next(line for line in env.pins.read_text().splitlines() if line and not line.startswith("#"))
    with tempfile.TemporaryDirectory() as dest:
        proc = _run([str(python), "-m", "pip", "download", "--no-deps", "--quiet", "--dest", dest, pin])
    return proc.returncode == 0, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def _remove_stale(env: CachedEnv) -> None:
    """Delete this environment's older keys in the default cache (they can be several GB)."""
    if os.environ.get(f"JNET_{env.name.upper()}_VENV"):
        return
    current = env.path()
    for old in current.parent.glob(f"jnet-{env.name}-venv-*"):
        if old != current and old.name != f"{current.name}.unavailable":
            print(f"removing stale {old}", flush=True)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def required_envs() -> set[str]:
    """The environments ``$JNET_REQUIRE_TEST_ENVS`` says must be made (``all``: every one)."""
    names = {n.strip() for n in os.environ.get("JNET_REQUIRE_TEST_ENVS", "").split(",") if n.strip()}
    return set(ENVS) if "all" in names else names


def _unavailable(env: CachedEnv, reason: str) -> int:
    Path(f"{env.path()}.unavailable").write_text(reason + "\n")
    if env.name in required_envs():
        print(f"ERROR: {reason} - and JNET_REQUIRE_TEST_ENVS requires it (its tests would only skip)", file=sys.stderr)
        return 1
    print(f"SKIP: {reason}", file=sys.stderr)
    return 0


def create(env: CachedEnv) -> int:
    """Create and fill the environment; 0 on success or when it cannot be made here, 1 on an install failure."""
    if env.is_ready():
        return 0
    venv = env.path()
    _remove_stale(env)
    shutil.rmtree(venv, ignore_errors=True)
    Path(f"{venv}.unavailable").unlink(missing_ok=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    interpreter = find_interpreter(env.python_version)
    if interpreter is None:
        return _unavailable(env, f"{env.name} environment not made: no Python {env.python_version} interpreter here (set JNET_PYTHON{env.python_version.replace('.', '')})")
    proc = _run([interpreter, "-m", "venv", str(venv)])
    if proc.returncode != 0:
        print(proc.stdout, file=sys.stderr)
        return 1
    python = env.python()
    # --no-compile: byte-compiling GBs of packages costs minutes of CPU; Python compiles what it imports
    steps = [[str(python), "-m", "pip", "install", "--quiet", "--upgrade", env.pip_first]] if env.pip_first else []
    steps.append([str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-r", str(env.pins)])
    if env.install_project:
        steps.append([str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-c", str(env.pins), "-e", str(REPO)])
    for step in steps:
        proc = _run(step)
        if proc.returncode == 0:
            continue
        print(proc.stdout[-4000:], file=sys.stderr)
        reachable, detail = _index_reachable(python, env)
        shutil.rmtree(venv, ignore_errors=True)
        if not reachable:
            return _unavailable(env, f"{env.name} environment not installed: pip cannot download its packages (no network?): {detail}")
        print(f"ERROR: installing the {env.name} environment into {venv} failed (see above)", file=sys.stderr)
        return 1
    (venv / STAMP).write_text(env.pins.read_text())
    return 0


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("--")] or list(ENVS)
    unknown = [n for n in set(names) | required_envs() if n not in ENVS]
    if unknown:
        print(f"ERROR: unknown environment(s) {', '.join(unknown)}; known: {', '.join(ENVS)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        if "--path" not in argv:
            status = max(status, create(ENVS[name]))
        print(ENVS[name].path())
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
