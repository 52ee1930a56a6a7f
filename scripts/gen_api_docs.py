#!/usr/bin/env python
"""Write the API reference pages under ``docs/api/`` from the package tree.

One page per part of refseg (models, shared blocks, pipeline, data, metrics, kernels, commands); each page
has one mkdocstrings block per public module, so every public class and function is rendered from its
docstring. Run it after adding a module: ``python scripts/gen_api_docs.py``; ``--check`` exits non-zero when
the pages on disk are out of date (the tests run it).
"""

from __future__ import annotations

import argparse
import pkgutil
import re
import sys
from pathlib import Path

try:  # the griffe extension below is used by mkdocs (mkdocs.yml); --check needs no griffe
    import griffe
except ImportError:  # pragma: no cover
    griffe = None

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "refseg"
CLI_PACKAGE = ROOT / "src" / "refseg_cli"

# page file -> (title, introduction, package prefixes whose modules the page documents)
PAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "models.md": (
        "Models",
        "Configurations, task models, image processors and processors of every architecture.",
        ("refseg.models",),
    ),
    "modeling.md": (
        "Shared blocks",
        "Blocks shared by several architectures (`refseg.modeling`), one concept per module.",
        ("refseg.modeling",),
    ),
    "pipelines.md": (
        "Pipeline and visualisation",
        'The `"referring-segmentation"` pipeline, Hub helpers and drawing utilities.',
        ("refseg.pipelines", "refseg.hub", "refseg.visualization"),
    ),
    "data.md": ("Data", "Dataset builders, synthetic scenes, augmentation and samplers.", ("refseg.data",)),
    "metrics.md": (
        "Metrics",
        "The official metric definitions and their `evaluate` modules.",
        ("refseg.metrics",),
    ),
    "kernels.md": ("Kernels", "The compiled multi-scale deformable attention op.", ("refseg.kernels",)),
    "commands.md": (
        "Command line",
        "The `refseg` command and its subcommands.",
        ("refseg_cli",),
    ),
    "app_export.md": (
        "Web app and export",
        "The Gradio app and the ONNX export.",
        ("refseg.app", "refseg.export"),
    ),
    "training.md": ("Training", "Crash-safe checkpoints and training helpers.", ("refseg.training",)),
}
# every public module not claimed by a page above lands here, so none is left out of the reference
OTHER_PAGE = (
    "utilities.md",
    "Utilities",
    "Input checks, image loading and other helpers shared by the library.",
)
TOP_LEVEL = (
    "# Top level\n\nThe names a user imports from `refseg` directly, as in transformers "
    "(`from refseg import InstAlignConfig, ...`); each is documented on the page of the module that "
    "defines it.\n\n::: refseg\n    options:\n      show_submodules: false\n"
)


def _fail(name: str) -> None:
    """``walk_packages`` skips a package that fails to import: fail instead, so no page silently shrinks."""
    raise ImportError(f"cannot import {name} to list its modules")


def public_modules() -> list[str]:
    """Importable module names of refseg whose own name and parents' names are not private."""
    names = ["refseg", "refseg_cli"]
    for package in (PACKAGE, CLI_PACKAGE):
        for info in pkgutil.walk_packages([str(package)], f"{package.name}.", onerror=_fail):
            if any(part.startswith("_") for part in info.name.split(".")[1:]):
                continue
            names.append(info.name)
    return sorted(names)


def render() -> dict[str, str]:
    """The text of every page, keyed by file name under ``docs/api/``."""
    modules = public_modules()
    pages = {"refseg.md": TOP_LEVEL}
    claimed = {"refseg"}
    sections = [(file, title, intro, prefixes) for file, (title, intro, prefixes) in PAGES.items()]
    for file, title, intro, prefixes in sections:
        members = [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]
        claimed.update(members)
        pages[file] = _page(title, intro, members)
    file, title, intro = OTHER_PAGE
    pages[file] = _page(title, intro, [m for m in modules if m not in claimed])
    return pages


def _page(title: str, intro: str, modules: list[str]) -> str:
    """One API page: a heading, a sentence and one mkdocstrings block per module."""
    blocks = [f"::: {m}\n    options:\n      show_submodules: false\n" for m in modules]
    return f"# {title}\n\n{intro}\n\n" + "\n".join(blocks)


# transformers-style cross-reference in a docstring: [`Name`], [`~module.Name`], [`Name.method`]
# (not already followed by a link target or reference label)
HF_CROSS_REF = re.compile(r"\[`~?([A-Za-z_][\w.]*)`\](?![\[(])")
# Sphinx-style roles, which Markdown shows verbatim: :class:`~refseg.x.Name`, :func:`name`
RST_CROSS_REF = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|attr|obj|data|exc):`(~?)([A-Za-z_][\w.]*)(?:\(\))?`"
)
# the "(`int`, defaults to 480)" style of the docstrings: the type, then the default in words
TYPE_AND_DEFAULT = re.compile(
    r"^(?P<type>.*?),\s*(?:\*optional\*\s*,\s*)?defaults?(?:\s+to)?\s+(?P<default>.+?)\.?$"
)
CONFIG_BASES = ("PreTrainedConfig", "PretrainedConfig")


def _walk(obj):
    """``obj`` and every object defined under it (no aliases)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _rendered(obj) -> bool:
    """Whether the API reference renders ``obj``: a public path with a docstring, in a public module."""
    return bool(obj.docstring) and not any(part.startswith("_") for part in obj.path.split(".")[1:])


def _decorator_names(cls) -> set[str]:
    return {str(d.value).rsplit(".", 1)[-1].split("(")[0] for d in cls.decorators}


def _is_config(cls) -> bool:
    """A refseg configuration: a dataclass through transformers' ``PreTrainedConfig`` (and ``@strict``)."""
    bases = {str(base).rsplit(".", 1)[-1] for base in cls.bases}
    return bool(bases & set(CONFIG_BASES)) or "strict" in _decorator_names(cls)


def _is_dataclass_like(cls) -> bool:
    """``@dataclass``, or a configuration, which griffe does not see as a dataclass."""
    return "dataclass" in _decorator_names(cls) or _is_config(cls)


def _ancestors(cls) -> list:
    """``cls``'s base classes within the loaded packages, nearest first (those outside are skipped)."""
    try:
        return list(cls.mro())
    except Exception:  # a base outside the loaded packages
        return []


def _field_default(value):
    """The default of a field: ``8`` for ``interval(min=1)(default=8)`` or ``positive_multiple_of(32, default=8)``."""
    if isinstance(value, griffe.ExprCall):
        for argument in value.arguments:
            if isinstance(argument, griffe.ExprKeyword) and argument.name == "default":
                return argument.value
    return value


def _dataclass_init(cls):
    """``__init__(self, field=default, ...)`` from the annotated fields of ``cls`` and its dataclass bases.

    griffe builds this only for ``@dataclasses.dataclass`` and only after every extension's ``on_package``
    (configurations never get one), so the reference would show every documented field as "required".
    Configurations take their fields as keywords (transformers' own fields come first) and ``**kwargs``.
    """
    kind = griffe.ParameterKind
    config = _is_config(cls) or any(_is_config(base) for base in _ancestors(cls))
    fields: dict = {}
    for owner in [*reversed([b for b in _ancestors(cls) if _is_dataclass_like(b)]), cls]:
        for member in owner.members.values():
            if member.is_alias or not member.is_attribute or member.annotation is None:
                continue
            if "instance-attribute" not in member.labels:  # ClassVar: griffe strips it from the annotation
                continue
            fields[member.name] = griffe.Parameter(
                member.name,
                annotation=member.annotation,
                kind=kind.keyword_only if config else kind.positional_or_keyword,
                default=_field_default(member.value),
            )
    params = [griffe.Parameter("self", kind=kind.positional_or_keyword), *fields.values()]
    if config:
        params.append(griffe.Parameter("kwargs", kind=kind.var_keyword))
    return griffe.Function(
        "__init__", parameters=griffe.Parameters(*params), lineno=cls.lineno, endlineno=cls.lineno, parent=cls
    )


def _class_default(obj, name: str):
    """For a class whose ``__init__`` takes ``**kwargs``: the class attribute ``name``'s value, if any."""
    for owner in [obj, *_ancestors(obj)] if obj.is_class else ():
        member = owner.members.get(name)
        if member is not None and not member.is_alias and member.is_attribute and member.value is not None:
            return member.value
        init = owner.members.get("__init__")
        if init is not None and not init.is_alias and name in init.parameters:
            return init.parameters[name].default
    return None


def _link_cross_refs(text: str, targets: dict[str, str]) -> str:
    """[`Name`] and :class:`Name` -> [`Name`][full.path] where the reference renders it, else `Name`."""

    def link(name: str, short: bool) -> str:
        shown = name.rsplit(".", 1)[-1] if short else name
        head, _, rest = name.partition(".")
        target = targets.get(name) or (targets.get(head) and rest and targets.get(f"{targets[head]}.{rest}"))
        return f"[`{shown}`][{target}]" if target else f"`{shown}`"

    text = HF_CROSS_REF.sub(lambda m: link(m.group(1), m.group(0).startswith("[`~")), text)
    return RST_CROSS_REF.sub(lambda m: link(m.group(2), bool(m.group(1))), text)


def _fix_parameter_defaults(obj) -> None:
    """Defaults of documented parameters, so the reference shows "required" only where a value is needed.

    mkdocstrings takes a documented parameter's default from the signature; an entry that names several
    parameters ("a, b (`float`, defaults 2, 5)") gets them joined ("required" for one without), one that the
    signature takes through ``**kwargs`` gets the class attribute of its name (image processors), and a
    default given only in words ("defaults to Swin-B" for ``None``) is shown in words. The type column keeps
    only the type.
    """
    signature = {p.name: p for p in getattr(obj, "parameters", None) or ()}
    sections = obj.docstring.parsed
    for index, section in reversed(list(enumerate(sections))):
        if section.kind.value != "parameters":
            continue
        prose = [e for e in section.value if any(" " in part.strip() for part in e.name.split(","))]
        if prose:  # "Other arguments as in X." read as a parameter named "Other arguments as"
            section.value[:] = [entry for entry in section.value if entry not in prose]
            text = "\n\n".join(f"{entry.name.strip()} {entry.description}".strip() for entry in prose)
            sections.insert(index + 1, griffe.DocstringSectionText(text))
        for entry in section.value:
            annotation = entry.annotation if isinstance(entry.annotation, str) else None
            words = TYPE_AND_DEFAULT.match(annotation) if annotation else None
            if words:
                entry.annotation = words.group("type").replace("`", "").strip()
            if entry.default is None:
                defaults = []
                for name in (n.strip() for n in entry.name.split(",")):
                    if name in signature:
                        defaults.append(signature[name].default)
                    else:
                        defaults.append(_class_default(obj, name))
                if any(d is not None for d in defaults):
                    entry.default = ", ".join("required" if d is None else str(d) for d in defaults)
            if words and (entry.default is None or str(entry.default) == "None"):
                entry.default = words.group("default").strip().strip("`")


if griffe is not None:

    class RefsegDocstrings(griffe.Extension):
        """griffe extension (``mkdocs.yml``) that makes the API reference true to the code.

        * configurations (dataclasses through ``PreTrainedConfig``) get their fields' defaults;
        * transformers-style cross-references ``[`Name`]`` become links (or plain code where the reference
          does not render the name), instead of literal brackets.
        """

        def on_package(self, *, pkg, **kwargs) -> None:
            """Rewrite the docstrings of the loaded package ``refseg`` (or ``refseg_cli``)."""
            objects = [o for o in _walk(pkg)]
            targets: dict[str, str] = {}
            for obj in objects:
                if (obj.is_class or obj.is_function) and _rendered(obj) and obj.parent is not None:
                    targets.setdefault(obj.path, obj.path)
                    if obj.parent.is_module or obj.parent.is_class:
                        short = obj.path.rsplit(".", 1)[-1] if obj.parent.is_module else None
                        if short and targets.get(short, obj.path) != obj.path:
                            targets[short] = ""  # ambiguous short name: no link
                        elif short:
                            targets[short] = obj.path
            targets = {k: v for k, v in targets.items() if v}
            for obj in objects:
                if obj.is_class and "__init__" not in obj.members and _is_dataclass_like(obj):
                    obj.set_member("__init__", _dataclass_init(obj))
            for obj in objects:
                if obj.docstring:
                    obj.docstring.value = _link_cross_refs(obj.docstring.value, targets)
            for obj in objects:
                if obj.docstring and (obj.is_class or obj.is_function):
                    _fix_parameter_defaults(obj)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api/ is out of date")
    args = parser.parse_args(argv)
    out = ROOT / "docs" / "api"
    stale = []
    for name, text in render().items():
        path = out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python scripts/gen_api_docs.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
