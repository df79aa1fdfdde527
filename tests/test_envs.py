"""tests/envs.py: an environment that cannot be made here skips its tests, unless JNET_REQUIRE_TEST_ENVS requires
it (what .ci/run sets), when ``make test-envs`` - and so ``make test`` - fails."""

import os
import subprocess
import sys

ENVS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "envs.py")


def _make_py36(tmp_path, require):
    env = {**os.environ, "JNET_PY36_VENV": str(tmp_path / "py36"), "JNET_PYTHON36": str(tmp_path / "no-python3.6"),
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "JNET_REQUIRE_TEST_ENVS": require}  # no pyenv, no python3.6
    return subprocess.run([sys.executable, ENVS_SCRIPT, "py36"], capture_output=True, text=True, env=env, timeout=120)


def test_an_environment_that_cannot_be_made_skips_unless_required(tmp_path):
    if any(os.path.exists(os.path.join(d, "python3.6")) for d in ("/usr/bin", "/bin")):
        import pytest

        pytest.skip("this machine has a system python3.6: the environment can be made")
    skipped = _make_py36(tmp_path, "")
    assert skipped.returncode == 0, skipped.stderr
    assert "SKIP: py36 environment not made: no Python 3.6 interpreter here" in skipped.stderr
    assert (tmp_path / "py36.unavailable").read_text().startswith("py36 environment not made")

    required = _make_py36(tmp_path, "py36,monailabel")
    assert required.returncode == 1
    assert "ERROR: py36 environment not made: no Python 3.6 interpreter here" in required.stderr
    assert "JNET_REQUIRE_TEST_ENVS requires it" in required.stderr
    assert _make_py36(tmp_path, "all").returncode == 1


def test_an_unknown_required_environment_is_refused(tmp_path):
    result = _make_py36(tmp_path, "py37")
    assert result.returncode == 2 and "unknown environment(s) py37" in result.stderr
