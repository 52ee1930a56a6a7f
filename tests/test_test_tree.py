"""The test tree cannot shadow an installed package (pytest's importlib mode, no regular packages in tests/)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _test_folders() -> list[Path]:
    return [TESTS, *sorted(p for p in TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__")]


def test_no_test_folder_is_on_sys_path():
    on_path = {Path(p).resolve() for p in sys.path if p}
    assert not on_path & {p.resolve() for p in _test_folders()}


def test_no_regular_package_under_tests_or_at_the_root():
    """A folder with an ``__init__.py`` is a regular package and wins over an installed one of its name;
    folders without one are namespace portions, which never shadow an installed package."""
    packages = [p for p in (*_test_folders(), *ROOT.iterdir()) if (p / "__init__.py").is_file()]
    assert packages == [], packages


def test_no_top_level_module_at_the_root_shadows_an_installed_one():
    site = [p for p in sys.path if p and Path(p).resolve() != ROOT]
    clashes = [
        p.name
        for p in ROOT.glob("*.py")
        if importlib.util.find_spec(p.stem) is not None
        and importlib.machinery.PathFinder.find_spec(p.stem, site) is not None
    ]
    assert clashes == []


def test_transformers_model_machinery_imports_with_every_test_folder_on_the_path():
    """The old prepend import mode put test folders first on sys.path: with them there, transformers' model
    machinery (which imports the ``kernels`` package in transformers >= 5.25) and refseg's models still import,
    and no module comes from the test tree."""
    code = (
        "import sys\n"
        "import transformers\n"
        "from transformers import AutoModel, PreTrainedModel\n"
        "import transformers.modeling_utils, transformers.integrations.hub_kernels\n"
        "import refseg\n"
        "from refseg.models.instalign import InstAlignForReferringSegmentation\n"
        "tests = sys.argv[1]\n"
        "bad = sorted(n for n, m in list(sys.modules.items())\n"
        "             if (getattr(m, '__file__', None) or '').startswith(tests))\n"
        "assert not bad, bad\n"
        "print('ok', transformers.__version__)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in _test_folders()))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(TESTS) + os.sep],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok ")
