"""The API reference (``docs/api/``, built by ``mkdocs build --strict``) covers every public name.

Every public class and function of refseg must have a docstring, since the reference renders nothing for
one without; the generated pages must list every public module.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from gen_api_docs import public_modules  # noqa: E402


def _public_objects(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__:
            yield name, obj


def test_every_public_class_and_function_has_a_docstring():
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        if not (module.__doc__ or "").strip():
            missing.append(f"module {module_name}")
        for name, obj in _public_objects(module):
            if not (obj.__doc__ or "").strip() or (inspect.isclass(obj) and "__doc__" not in vars(obj)):
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if (
                        attr.startswith("_")
                        or not inspect.isfunction(member)
                        or member.__name__ == "<lambda>"
                    ):
                        continue
                    if any(attr in vars(base) for base in obj.__mro__[1:]):
                        continue  # an override documents itself through its base
                    if not (member.__doc__ or "").strip():
                        missing.append(f"{module_name}.{name}.{attr}")
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_api_pages_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_api_docs.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
