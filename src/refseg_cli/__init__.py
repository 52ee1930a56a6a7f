"""The ``refseg`` command: ``demo``, ``predict``, ``app``, ``export``, ``convert``, ``data`` and ``kernels``.

This package is the whole command line: this module is the dispatcher (the console script's entry point,
``refseg_cli:main``) and each sub-command is one module beside it (``refseg_cli.demo``, ``refseg_cli.data``,
...) with ``add_arguments(parser)`` and ``run(args) -> int``. It lives outside the ``refseg`` package on
purpose: ``import refseg`` registers every model with transformers' Auto classes, which imports torch, while
``refseg --help`` and ``refseg --version`` should answer at once. Only the chosen sub-command's module is
imported (``refseg --help`` imports none of them, nor torch nor transformers). A user error prints one line,
``refseg <command>: error: ...``, to stderr and exits with status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module that provides ``add_arguments(parser)`` and ``run(args) -> int``
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "refseg_cli.demo",
        "run the pipeline on fresh synthetic scenes and write an overlay picture",
    ),
    "predict": ("refseg_cli.predict", "segment what a sentence refers to in your own image"),
    "kernels": ("refseg_cli.kernels", "build or inspect the compiled multi-scale deformable attention"),
    "data": ("refseg_cli.data", "prepare benchmark datasets in the refseg schema"),
    "app": ("refseg_cli.app", "start the web app (Gradio): upload an image, type a sentence"),
    "export": ("refseg_cli.export", "export a model to ONNX"),
    "convert": ("refseg_cli.convert", "convert a released checkpoint of an original implementation"),
}


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (sub-command parsers inherit it)."""

    def error(self, message: str):
        """Print ``PROG: error: MESSAGE (see PROG --help)`` to stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DESCRIPTION = "refseg: referring expression segmentation from the command line (one sub-command per job)."
EPILOG = """examples:
  refseg demo                                        the bundled demo model on fresh synthetic scenes
  refseg predict --image photo.jpg --text "the red circle" --output overlay.png
  refseg app                                         the web app on http://127.0.0.1:7860
  refseg export onnx --output demo.onnx              the demo model as an ONNX graph
  refseg convert instancevg CHECKPOINT.pth --output DIR
  refseg COMMAND --help                              the options of one command

--debug (anywhere on the line) shows the full traceback of an error."""


def _version() -> str:
    """refseg's version, read from the installed metadata (which ``refseg.__version__`` is the source of)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("refseg")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from refseg import __version__

        return __version__


def _selected_command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if any."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in _COMMANDS else None
    return None


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The ``refseg`` parser; only ``selected`` (all when ``None``) gets its sub-command's arguments.

    Adding a sub-command's arguments imports its module, so ``refseg --help`` passes
    ``selected=""`` and imports none.
    """
    parser = _Parser(
        prog="refseg",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"refseg {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for name, (module, help_text) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if selected is None or selected == name:
            importlib.import_module(module).add_arguments(sp)
            _describe_subcommands(sp)
        sp.set_defaults(_module=module)
    return parser


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """Give every nested sub-command without a description its one-line help as description.

    ``refseg kernels build --help`` then says what the command does, not only its options.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if not sub.description and helps.get(name):
                sub.description = helps[name]
            _describe_subcommands(sub)


def _one_line(err: BaseException) -> str:
    """The error's message on one line (its type name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the sub-command and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser(_selected_command(argv) or "").parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"refseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        print(f"refseg {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
