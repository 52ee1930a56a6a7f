"""The API reference tells the truth: defaults where the code has them, links instead of literal brackets.

mkdocstrings shows "required" for a documented parameter whose default it cannot find; griffe finds none for
refseg's configurations (dataclasses through transformers' ``PreTrainedConfig``, which it does not
recognise), for a docstring entry that names several parameters, or for parameters an ``__init__`` takes
through ``**kwargs``. transformers-style ``[`Name`]`` and Sphinx ``:class:`Name``` references are no
Markdown links and showed verbatim. ``scripts/gen_api_docs.py``'s griffe extension (``RefsegDocstrings``,
registered in ``mkdocs.yml``) fixes both; these tests load the package the way mkdocs does and build the site.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import gen_api_docs  # noqa: E402


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("", lambda loader, suffix, node: None)  # mkdocs' !!python/name tags


def _handler_options() -> dict:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            return plugin["mkdocstrings"]["handlers"]["python"]["options"]
    raise AssertionError("mkdocs.yml has no mkdocstrings plugin")


@pytest.fixture(scope="module")
def packages():
    """refseg and refseg_cli as mkdocs loads them: the extensions and docstring options of mkdocs.yml."""
    options = _handler_options()
    specs = options.get("extensions", [])
    assert "scripts/gen_api_docs.py:RefsegDocstrings" in [str(s).split(" ")[0] for s in specs]
    cwd = os.getcwd()
    os.chdir(ROOT)  # extension paths in mkdocs.yml are relative to the repository root
    try:
        extensions = griffe.load_extensions(*specs)
        return [
            griffe.load(
                name,
                search_paths=[str(ROOT / "src")],
                docstring_parser=options.get("docstring_style", "google"),
                docstring_options=options.get("docstring_options", {}),
                extensions=extensions,
            )
            for name in ("refseg", "refseg_cli")
        ]
    finally:
        os.chdir(cwd)


def _rendered_objects(packages):
    for pkg in packages:
        for obj in gen_api_docs._walk(pkg):
            if obj.docstring and (obj.is_class or obj.is_function) and gen_api_docs._rendered(obj):
                yield obj


def _runtime(path: str):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(path)


def _parameter_entries(obj):
    for section in obj.docstring.parsed:
        if section.kind.value == "parameters":
            yield from section.value


def test_required_only_where_the_code_requires_a_value(packages):
    wrong = []
    for obj in _rendered_objects(packages):
        entries = [e for e in _parameter_entries(obj) if e.default is None]  # rendered as "required"
        if not entries:
            continue
        signature = inspect.signature(_runtime(obj.path)).parameters
        for entry in entries:
            for name in (n.strip() for n in entry.name.split(",")):
                param = signature.get(name)
                if (
                    param is None
                    or param.default is not inspect.Parameter.empty
                    or param.kind
                    in (
                        inspect.Parameter.VAR_KEYWORD,
                        inspect.Parameter.VAR_POSITIONAL,
                    )
                ):
                    wrong.append(f"{obj.path}: {entry.name}")
                    break
    assert not wrong, f"{len(wrong)} parameters shown as 'required' that have a default:\n" + "\n".join(wrong)


def test_every_config_field_shows_its_default(packages):
    from transformers import PreTrainedConfig

    configs = [
        obj
        for obj in _rendered_objects(packages)
        if obj.is_class and issubclass(_runtime(obj.path), PreTrainedConfig)
    ]
    assert len(configs) >= 5  # the four models' and BEiT-3's
    instalign = next(c for c in configs if c.name == "InstAlignConfig")
    shown = {e.name: str(e.default) for e in _parameter_entries(instalign)}
    assert shown["image_size"] == "480" and shown["num_queries"] == "100"
    assert shown["transformer_decoder"] == "'phrase_object'"
    assert shown["backbone_config"] == "Swin-B"  # None in the code; the docstring says what None means
    assert shown["lambda_score, lambda_mask, lambda_phrase"] == "2.0, 5.0, 1.0"
    for config in configs:
        for entry in _parameter_entries(config):
            assert entry.default is not None, f"{config.path}: {entry.name} shown as required"
            assert "defaults" not in str(entry.annotation), f"{config.path}: {entry.name}: {entry.annotation}"


CROSS_REF = re.compile(r"\[`[^`\]]+`\](?![\[(])|:(?:py:)?(?:class|func|meth|mod|attr|obj|exc):`")


def test_no_cross_reference_keeps_its_brackets(packages):
    left = []
    for pkg in packages:
        for obj in gen_api_docs._walk(pkg):
            if obj.docstring and CROSS_REF.search(obj.docstring.value):
                left.append(f"{obj.path}: {CROSS_REF.search(obj.docstring.value).group(0)}")
    assert not left, "cross-references Markdown shows verbatim:\n" + "\n".join(left)


def test_cross_references_link_to_rendered_objects():
    targets = {"InstAlignForReferringSegmentation": "refseg.models.instalign.modeling_instalign.X"}
    text = (
        "Configuration of [`InstAlignForReferringSegmentation`]; see [`PreTrainedModel`] and :class:`~a.b.C`."
    )
    assert gen_api_docs._link_cross_refs(text, targets) == (
        "Configuration of [`InstAlignForReferringSegmentation`][refseg.models.instalign.modeling_instalign.X]; "
        "see `PreTrainedModel` and `C`."
    )


@pytest.mark.slow
def test_built_site_has_defaults_and_links(tmp_path):
    """Build the site (strict) and read the rendered InstAlignConfig table and the cross-references."""
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pages = {p: p.read_text() for p in (site / "api").rglob("*.html")}
    brackets = [
        f"{p.parent.name}: {m}" for p, t in pages.items() for m in re.findall(r"\[<code>[^<]*</code>\]", t)
    ]
    assert not brackets, brackets[:20]
    models = pages[site / "api" / "models" / "index.html"]
    start = models.index('id="refseg.models.instalign.configuration_instalign.InstAlignConfig"')
    table = models[start : models.index("</table>", start)]
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table))
    assert "required" not in cells
    assert re.search(r"image_size int training / inference resolution \(square\)\. 480", cells), cells[:2000]
    assert 'href="#refseg.models.instalign.modeling_instalign.InstAlignForReferringSegmentation"' in models
