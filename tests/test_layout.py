"""The package is one house with floors and every import points down (jnet/__init__.py, ../DESIGN floors):
processing < product < bundles < deploy < tools < cli. A bundle run imports the product floor and below only."""

import ast
import os
import subprocess
import sys

import pytest

from conftest import BUNDLE_16, BUNDLES

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jnet")
PRODUCT = ("networks", "losses", "transforms", "inferers", "handlers", "engines", "data", "checkpoints", "distributed", "errors", "provenance")
FLOORS = {
    "processing": 0,
    **{name: 1 for name in PRODUCT},
    "bundles": 2,
    "deploy": 3,
    "tools": 4,
    "cli": 5,
    "__main__": 5,
}
FLOOR_NAMES = ["processing", "product", "bundles", "deploy", "tools", "cli"]


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")].split(os.sep)
                yield path, parts[:-1] if parts[-1] == "__init__" else parts, name == "__init__.py"


def _imported(node, module_parts, is_package):
    """The absolute jnet module names an import node imports (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "jnet"]
    if node.level == 0:
        if (node.module or "").split(".")[0] != "jnet":
            return []
        base = node.module
    else:
        package = module_parts if is_package else module_parts[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    if base == "jnet":  # from jnet import processing, errors
        return [f"jnet.{a.name}" for a in node.names]
    return [base]


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 else None  # `jnet` itself: the product's namespace


def upward_imports() -> list[str]:
    arrows = []
    for path, parts, is_package in _modules():
        here = _floor(".".join(parts))
        if here is None:
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for module in _imported(node, parts, is_package):
                    there = _floor(module)
                    if there is not None and there > here:
                        arrows.append(f"{os.path.relpath(path, os.path.dirname(PACKAGE))}:{node.lineno} ({FLOOR_NAMES[here]}) imports {module} ({FLOOR_NAMES[there]})")
    return arrows


def test_every_module_has_a_floor():
    unplaced = sorted({parts[1] for _, parts, _ in _modules() if len(parts) > 1 and parts[1] not in FLOORS})
    assert not unplaced, f"give these a floor in tests/test_layout.py: {unplaced}"


def test_every_import_points_down():
    assert upward_imports() == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk is not vacuous: a product module importing a tool, absolutely or relatively, is reported."""
    package = tmp_path / "jnet"
    (package / "data").mkdir(parents=True)
    (package / "tools").mkdir()
    (package / "data" / "__init__.py").write_text("from ..tools import synthetic\n")
    (package / "data" / "layouts.py").write_text("import jnet.deploy.kit\nfrom jnet.processing import steps\n")
    (package / "tools" / "__init__.py").write_text("from jnet.data import layouts\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", str(package))
    assert upward_imports() == [
        "jnet/data/__init__.py:1 (product) imports jnet.tools (tools)",
        "jnet/data/layouts.py:1 (product) imports jnet.deploy.kit (deploy)",
    ]


# what a bundle run imports: `$import jnet` and the configs' _target_s, parsed and built as monai.bundle run does.
# MONAI itself imports parts of scipy (scipy.ndimage among them): what jnet adds on top must hold no scipy module.
BUNDLE_RUN = """
import sys
import ignite.engine, monai.bundle, monai.data, monai.engines, monai.handlers, monai.inferers, monai.losses, monai.transforms
from monai.bundle import ConfigParser
monai_own = set(sys.modules)
parser = ConfigParser()
parser.read_config([sys.argv[1] + '/configs/' + name for name in sys.argv[2].split(',')])
parser['bundle_root'] = sys.argv[1]
for key in sys.argv[3].split(','):
    parser.get_parsed_content(key, lazy=True, instantiate=True)
assert 'jnet.networks' in sys.modules and 'jnet.processing' in sys.modules\nadded = set(sys.modules) - monai_own\nloaded = sorted(m for m in added if m.startswith(('scipy', 'jnet.tools', 'jnet.deploy', 'jnet.bundles', 'jnet.cli')))
print(' '.join(loaded) or 'clean')
"""


@pytest.mark.parametrize(
    "bundle,configs,keys",
    [
        (BUNDLE_16, "train.json", "network_def,loss,train#preprocessing,validate#preprocessing,validate#postprocessing"),
        (BUNDLE_16, "inference.json", "network_def,preprocessing,postprocessing,inferer"),
        ("brats_mri_lowres_32", "train.json", "network_def,loss,train#preprocessing,validate#postprocessing"),
    ],
)
def test_a_bundle_run_imports_no_tools_deployment_or_scipy_of_its_own(bundle, configs, keys):
    result = subprocess.run(
        [sys.executable, "-c", BUNDLE_RUN, os.path.join(BUNDLES, bundle), configs, keys], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "clean"
