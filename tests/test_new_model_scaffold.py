"""``scripts/new_model.py``: the scaffold writes a working model that passes the shared model tester.

The scaffold runs into a temporary copy of the parts of the repository it edits and the shared tester needs
(``src/refseg``, the test helpers, ``tests/models/test_all_models.py`` and ``test_model_contract.py``,
``tests/docs/test_snippets.py``, ``mkdocs.yml``, ``CHANGELOG.md``, ``pyproject.toml``); the repository itself
is never written. The shared tester then runs, in a subprocess that imports the copy, over the new model: every
check of ``tests/models/test_all_models.py`` and ``test_model_contract.py`` must pass on it (and the model card
and docs page checks), and a copy
whose ``forward`` ignores unknown arguments must fail the unknown-arguments check.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import new_model  # noqa: E402

#: sorts between ``presence_plurality`` and ``rela``, so that the registry edit inserts in the middle
NAME = "probe_scaffold"
#: a second model, scaffolded and then broken by hand
BROKEN = "probe_broken"
#: a third, scaffolded ``--like rela`` (a renamed copy of ReLA's package and tester)
LIKE = "probe_like"
SHARED_TESTS = ROOT / "tests" / "models" / "test_all_models.py"
CONTRACT_TESTS = ROOT / "tests" / "models" / "test_model_contract.py"
SNIPPET_TESTS = ROOT / "tests" / "docs" / "test_snippets.py"


def _copy_repository(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd")
    shutil.copytree(ROOT / "src" / "refseg", destination / "src" / "refseg", ignore=ignore)
    (destination / "tests" / "models").mkdir(parents=True)
    for helper in (ROOT / "tests").glob("*.py"):  # conftest.py, model_tester.py, processing_helpers.py, ...
        shutil.copy(helper, destination / "tests" / helper.name)
    for shared in (SHARED_TESTS, CONTRACT_TESTS):
        shutil.copy(shared, destination / "tests" / "models" / shared.name)
    for tester in (ROOT / "tests" / "models").glob("*/tester_*.py"):  # what --like copies
        (destination / "tests" / "models" / tester.parent.name).mkdir()
        shutil.copy(tester, destination / "tests" / "models" / tester.parent.name / tester.name)
    (destination / "tests" / "docs").mkdir()
    shutil.copy(SNIPPET_TESTS, destination / "tests" / "docs" / SNIPPET_TESTS.name)
    for name in ("pyproject.toml", "mkdocs.yml", "CHANGELOG.md"):
        shutil.copy(ROOT / name, destination / name)
    (destination / "README.md").write_text("# refseg\n")  # the snippet test reads it; only the new pages run


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A copy of the repository with ``NAME`` scaffolded, ``BROKEN`` scaffolded then made to accept any
    keyword argument in its ``forward``, and ``LIKE`` scaffolded from ReLA."""
    root = tmp_path_factory.mktemp("repository")
    _copy_repository(root)
    new_model.scaffold(NAME, root, api_docs=False)
    new_model.scaffold(BROKEN, root, api_docs=False)
    new_model.scaffold(LIKE, root, api_docs=False, like="rela")
    modeling = root / "src" / "refseg" / "models" / BROKEN / f"modeling_{BROKEN}.py"
    source = modeling.read_text()
    assert source.count("reject_unknown_kwargs(kwargs, self.forward)") == 2
    modeling.write_text(source.replace("reject_unknown_kwargs(kwargs, self.forward)", "pass"))
    return root


def _test_names(path: Path, argument: str | None = None) -> set[str]:
    """The test functions of ``path`` (those taking ``argument``, when given)."""
    return {
        node.name
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("test_")
        and (argument is None or argument in {a.arg for a in node.args.args})
    }


def _parameters(test_id: str) -> list[str]:
    """The parameter ids of a test id: ``a.py::test_x[probe-above-default]`` -> ``["probe", "above", "default"]``."""
    return test_id.partition("[")[2].rstrip("]").split("-")


def _run_pytest(root: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *arguments]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a scaffold and a pytest run of the shared tester in a subprocess
def test_scaffolded_model_passes_every_check_of_the_shared_tester(copy):
    """Every test function of ``tests/models/test_all_models.py`` runs on the scaffolded model and passes, and
    so do the per-model checks of ``tests/models/test_model_contract.py``, the model's own tests, its model
    card's checks and its docs page's snippets; ``BROKEN`` fails exactly the two unknown-arguments checks;
    ``LIKE`` (a renamed ReLA) is registered with its tester and returns the output contract."""
    run = _run_pytest(
        copy,
        "tests/models/test_all_models.py",
        "tests/models/test_model_contract.py",
        f"tests/models/{NAME}",
        "tests/test_model_cards_files.py",
        "tests/docs/test_snippets.py",
        "-k",
        f"{NAME} or ({BROKEN} and unknown_keyword) or ({LIKE} and (has_a_tester or shared_contract))",
    )
    report = run.stdout + run.stderr
    passed = set(re.findall(r"^PASSED (\S+)", report, re.M))
    failed = set(re.findall(r"^FAILED (\S+?)(?: - |$)", report, re.M))

    def ran(path: Path) -> set[str]:
        prefix = f"{path.relative_to(ROOT)}::"
        return {
            t[len(prefix) :].split("[")[0] for t in passed if t.startswith(prefix) and NAME in _parameters(t)
        }

    assert ran(SHARED_TESTS) == _test_names(SHARED_TESTS), (
        f"shared checks failed on {NAME}:\n{report[-4000:]}"
    )
    assert ran(CONTRACT_TESTS) == _test_names(CONTRACT_TESTS, "tiny"), report[-4000:]
    own = {test for test in passed if f"tests/models/{NAME}/" in test}
    assert len(own) == 2, report[-4000:]
    assert (
        f"tests/test_model_cards_files.py::test_every_card_says_at_the_top_that_import_refseg_registers_the_model[{NAME}.md]"
        in passed
    )
    snippets = {
        test
        for test in passed
        if test.startswith(f"tests/docs/test_snippets.py::test_snippet_runs_as_written[docs/models/{NAME}.md")
    }
    assert len(snippets) == 2, report[-4000:]
    like = {test.split("::")[-1] for test in passed if LIKE in _parameters(test)}
    assert like == {
        f"test_every_registered_model_has_a_tester[{LIKE}]",
        f"test_outputs_are_the_shared_contract[{LIKE}]",
    }, report[-4000:]
    assert failed == {  # both checks of the forward prologue catch it
        f"tests/models/test_all_models.py::test_unknown_keyword_arguments_are_refused[{BROKEN}]",
        f"tests/models/test_model_contract.py::test_unknown_keyword_arguments_are_refused_the_same_way[{BROKEN}]",
    }, report[-4000:]


@pytest.mark.slow  # a scaffold and a pytest run of the shared tester in a subprocess
def test_scaffolded_files_pass_ruff_and_register_the_model(copy):
    model_files = [f"src/refseg/models/{NAME}", f"tests/models/{NAME}", "src/refseg/models/__init__.py"]
    for arguments in (["check"], ["format", "--check"]):
        run = subprocess.run(
            [sys.executable, "-m", "ruff", *arguments, *model_files], cwd=copy, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stdout + run.stderr
    registry = (copy / "src" / "refseg" / "models" / "__init__.py").read_text()
    assert registry.index(f"from .{NAME} import (") < registry.index("from .rela import")
    assert re.search(
        r"Architecture\(\s*ProbeScaffoldConfig,\s*ProbeScaffoldForReferringSegmentation,", registry
    )
    nav = (
        f"      - ProbeScaffold: models/{NAME}.md\n      - ProbeBroken: models/{BROKEN}.md\n"
        f"      - ProbeLike: models/{LIKE}.md\n  - Data: data.md"
    )
    assert nav in (copy / "mkdocs.yml").read_text()  # the last pages of the Models section
    changelog = (copy / "CHANGELOG.md").read_text()
    unreleased = changelog[
        changelog.index("## [Unreleased]") : changelog.index("\n## [", changelog.index("## [Unreleased]") + 1)
    ]
    assert f'- ProbeScaffold (`model_type="{NAME}"`' in unreleased.split("### Added", 1)[1]
    for path in (f"docs/models/{NAME}.md", f"model_cards/{NAME}.md", f"src/refseg/models/{NAME}/recipe.py"):
        text = (copy / path).read_text()
        assert new_model.TODO_MARKER in text and "template_model" not in text and "TemplateModel" not in text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Bad-Name",
            r"'Bad-Name' is not a valid model type: use a lowercase Python identifier in snake_case",
        ),
        ("2nd_model", r"'2nd_model' is not a valid model type"),
        ("lambda", r"'lambda' is not a valid model type"),
        ("double__underscore", r"'double__underscore' is not a valid model type"),
        ("rela", r"a model named 'rela' already exists \(src/refseg/models/rela/\); choose another NAME"),
        ("template_model", r"'template_model' is the template's own name"),
    ],
)
def test_a_bad_or_existing_name_is_refused_before_anything_is_written(name, message):
    with pytest.raises(new_model.ScaffoldError, match=message):
        new_model.plan(name, ROOT)


def test_like_must_name_an_existing_model():
    with pytest.raises(
        new_model.ScaffoldError, match=r"--like 'nope' is not a model of this repository; choose one of \["
    ):
        new_model.plan("probe_new", ROOT, like="nope")


def test_renaming_touches_whole_names_only():
    renames = (("Rela", "Foo"), ("rela", "foo"))
    text = "RelaConfig, convert_rela.py, models.rela, relative, Relation, ReLA, correlation"
    assert (
        new_model._rename(text, renames)
        == "FooConfig, convert_foo.py, models.foo, relative, Relation, ReLA, correlation"
    )


def test_a_taken_class_prefix_is_refused():
    with pytest.raises(new_model.ScaffoldError, match=r"the class prefix 'Metris' is taken"):
        new_model.plan("metris_two", ROOT, prefix="Metris")


def test_command_line_refusal_is_one_line_and_exit_code_2(capsys):
    assert new_model.main(["instalign", "--root", str(ROOT)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "new_model.py: error: a model named 'instalign' already exists"
    )


@pytest.mark.parametrize("length", [4, 10, 30])
def test_the_registry_edit_is_laid_out_as_ruff_format_does(length):
    """Short, long and very long class prefixes give the layout ``ruff format`` gives (one line, the names on
    one line inside the call, one name a line), so the edit is clean even where ruff is not installed."""
    source = (ROOT / "src" / "refseg" / "models" / "__init__.py").read_text()
    edited = new_model.registry_source(source, "zz_model", "Z" * length)
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", "models/__init__.py", "-"],
        input=edited,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert formatted == edited
    assert edited.index("from .rela import") < edited.index("from .zz_model import (")
