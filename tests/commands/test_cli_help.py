"""``refseg --help`` and every sub-command's help: plain text, all commands, a description and argument help."""

from __future__ import annotations

import argparse

import pytest

from refseg_cli import _COMMANDS, build_parser, main

OWN_COMMANDS = ("demo", "predict", "app", "export", "convert", "data", "kernels")


def _parsers(parser, path=("refseg",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_top_level_help_is_plain_text_and_names_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text
    for name in _COMMANDS:
        assert f"\n    {name} " in text, f"refseg --help does not list {name}"
    assert "refseg demo" in text and "refseg COMMAND --help" in text  # examples


def test_every_command_and_nested_command_has_a_description():
    missing = [" ".join(path) for path, parser in _parsers(build_parser(None)) if not parser.description]
    assert not missing, f"without a description: {missing}"


@pytest.mark.parametrize("command", OWN_COMMANDS)
def test_every_argument_has_help(command):
    parser = dict(_parsers(build_parser(command)))[("refseg", command)]
    missing = []
    for path, sub in _parsers(parser, (command,)):
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"arguments without help: {missing}"


@pytest.mark.parametrize("spelling", ["--config-overrides", "--config_overrides"])
def test_convert_accepts_both_spellings_of_config_overrides(spelling):
    argv = ["convert", "instancevg", "x.pth", "--output", "out", spelling, '{"a": 1}']
    args = build_parser("convert").parse_args(argv)
    assert args.config_overrides == '{"a": 1}'


def test_convert_documents_the_hyphenated_spellings():
    text = dict(_parsers(build_parser("convert")))[("refseg", "convert")].format_help()
    assert "--config-overrides CONFIG_OVERRIDES, --config_overrides" in text
    assert "--push-to-hub ORG/NAME, --push_to_hub" in text


def test_every_sub_command_is_a_module_of_the_one_cli_package():
    """The command line lives in ``refseg_cli`` only: every sub-command is a module beside the dispatcher,
    and no module of ``refseg`` defines a sub-command (``add_arguments`` + ``run``)."""
    import ast
    import importlib
    from pathlib import Path

    import refseg

    assert {module for module, _ in _COMMANDS.values()} == {f"refseg_cli.{name}" for name in _COMMANDS}
    for module, _ in _COMMANDS.values():
        loaded = importlib.import_module(module)
        assert callable(loaded.add_arguments) and callable(loaded.run), module
    outside = []
    for path in Path(refseg.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        if {"add_arguments", "run"} <= names:
            outside.append(str(path))
    assert outside == []
