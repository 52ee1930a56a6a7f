"""Every ```python block of README.md and docs/**/*.md runs as written.

The blocks of one page run in order in one namespace, as a reader would type them into one session, in a
fresh temporary folder, offline (``HF_HUB_OFFLINE=1``). All pages run in one subprocess (one import of
torch and transformers), each page in its own namespace and folder. A block that cannot run here opts out
with a visible marker on the line right before its fence, which must give a reason::

    <!-- snippet: skip (needs the Hub) -->
    ```python
    ...

Everything else runs by default, so a new snippet is tested without anyone asking for it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")
MARKER = re.compile(r"<!--\s*snippet:(?P<body>.*?)-->")
SKIP = re.compile(r"^\s*skip\s*\((?P<reason>[^()]*(?:\([^()]*\)[^()]*)*)\)\s*$")
PYTHON = {"python", "py", "python3"}
BLOCK_TIMEOUT_S = 120  # one block; the slowest (loading the demo model the first time) takes a few seconds
TOTAL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Snippet:
    page: str  # path relative to the repository root
    line: int  # 1-based line of the first code line
    code: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def parse_snippets(text: str, page: str) -> list[Snippet]:
    """The ```python blocks of a Markdown page with their skip markers; raises ValueError on a bad marker.

    A marker must be the last non-blank line before a python fence and read ``skip (reason)`` with a
    non-empty reason; a marker anywhere else (stale, misspelt, before a bash block) is an error.
    """
    lines = text.splitlines()
    snippets: list[Snippet] = []
    pending: tuple[int, str] | None = None  # (line, body) of a marker not yet attached to a block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.search(line)
        if marker:
            if pending is not None:
                raise ValueError(f"{page}:{pending[0]}: snippet marker not followed by a python block")
            pending = (i + 1, marker.group("body"))
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            info = fence.group("info").lower()
            close = fence.group("fence")
            body_start = i + 1
            j = body_start
            while j < len(lines) and not lines[j].strip().startswith(close):
                j += 1
            if info in PYTHON:
                reason = None
                if pending is not None:
                    skip = SKIP.match(pending[1])
                    if skip is None or not skip.group("reason").strip():
                        raise ValueError(
                            f"{page}:{pending[0]}: a snippet marker must read "
                            f"'<!-- snippet: skip (reason) -->', got {pending[1].strip()!r}"
                        )
                    reason = skip.group("reason").strip()
                    pending = None
                indent = len(fence.group("indent"))
                code = "\n".join(
                    raw[indent:] if raw[:indent].isspace() else raw for raw in lines[body_start:j]
                )
                snippets.append(Snippet(page, body_start + 1, code, reason))
            elif pending is not None:
                raise ValueError(f"{page}:{pending[0]}: snippet marker before a {info or 'plain'} block")
            i = j + 1
            continue
        if line.strip() and pending is not None:
            raise ValueError(f"{page}:{pending[0]}: snippet marker not directly before a python block")
        i += 1
    if pending is not None:
        raise ValueError(f"{page}:{pending[0]}: snippet marker at the end of the page")
    return snippets


def all_snippets(root: Path = ROOT) -> list[Snippet]:
    out = []
    for path in doc_pages(root):
        out.extend(parse_snippets(path.read_text(encoding="utf-8"), str(path.relative_to(root))))
    return out


# Runs in the subprocess: reads [[page, line, code], ...] from argv[1], writes {id: result} to argv[2].
RUNNER = r"""
import json, os, signal, sys, tempfile, time, traceback

blocks, out_path, block_timeout = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
results, namespaces, broken, home = {}, {}, {}, os.getcwd()

def _timeout(signum, frame):
    raise TimeoutError(f"snippet still running after {block_timeout} s")

signal.signal(signal.SIGALRM, _timeout)
for page, line, code in blocks:
    key = f"{page}:{line}"
    if page in broken:
        results[key] = {"status": "not run", "detail": f"an earlier block of the page failed ({broken[page]})"}
        continue
    if page not in namespaces:
        namespaces[page] = ({"__name__": "__main__"}, tempfile.mkdtemp(prefix="snippet-"))
    namespace, folder = namespaces[page]
    os.chdir(folder)
    start = time.perf_counter()
    signal.alarm(block_timeout)
    try:
        exec(compile("\n" * (line - 1) + code, page, "exec"), namespace)
        results[key] = {"status": "ok"}
    except BaseException:
        results[key] = {"status": "failed", "detail": traceback.format_exc(limit=-8)}
        broken[page] = key
    finally:
        signal.alarm(0)
        results[key]["seconds"] = round(time.perf_counter() - start, 2)
        os.chdir(home)
    with open(out_path, "w") as f:
        json.dump(results, f)
"""

SNIPPETS = all_snippets()


@pytest.fixture(scope="module")
def snippet_results(tmp_path_factory) -> dict:
    """Run every snippet that is not skip-marked; {snippet id: {"status", "detail", "seconds"}}."""
    folder = tmp_path_factory.mktemp("snippets")
    blocks = [[s.page, s.line, s.code] for s in SNIPPETS if s.skip_reason is None]
    (folder / "blocks.json").write_text(json.dumps(blocks))
    out = folder / "results.json"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(folder / "datasets-cache"),
        "MPLBACKEND": "Agg",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(folder / "blocks.json"), str(out), str(BLOCK_TIMEOUT_S)],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=TOTAL_TIMEOUT_S,
        )
        tail = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        tail = f"the snippet runner did not finish in {exc.timeout} s"
    results = json.loads(out.read_text()) if out.is_file() else {}
    for s in SNIPPETS:
        if s.skip_reason is None and s.id not in results:
            results[s.id] = {"status": "not run", "detail": f"the runner stopped before it:\n{tail}"}
    return results


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs_as_written(snippet: Snippet, snippet_results: dict):
    if snippet.skip_reason is not None:
        pytest.skip(f"{snippet.id} marked in the page: {snippet.skip_reason}")
    result = snippet_results[snippet.id]
    assert result["status"] == "ok", f"{snippet.id} {result['status']}:\n{result.get('detail', '')}"


def test_snippets_are_found():
    pages = {s.page for s in SNIPPETS}
    assert "README.md" in pages and "docs/pipeline.md" in pages
    assert any(s.skip_reason is None for s in SNIPPETS if s.page == "README.md")


def test_readme_snippet_uses_a_file_that_exists():
    """The README's first block runs without a file the reader would have to make first."""
    first = next(s for s in SNIPPETS if s.page == "README.md")
    assert first.skip_reason is None
    assert "example_image()" in first.code


def test_markers_need_a_reason_and_a_python_block():
    good = "text\n\n<!-- snippet: skip (needs the Hub) -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n"
    snippets = parse_snippets(good, "p.md")
    assert [(s.line, s.skip_reason) for s in snippets] == [(5, "needs the Hub"), (9, None)]
    for bad in (
        "<!-- snippet: skip -->\n```python\nx = 1\n```\n",  # no reason
        "<!-- snippet: skip () -->\n```python\nx = 1\n```\n",  # empty reason
        "<!-- snippet: skip (bash) -->\n```bash\nls\n```\n",  # not a python block
        "<!-- snippet: skip (stale) -->\nsome text\n\n```python\nx = 1\n```\n",  # not right before it
        "text\n<!-- snippet: skip (at the end) -->\n",
    ):
        with pytest.raises(ValueError, match="snippet marker"):
            parse_snippets(bad, "p.md")


def test_a_failing_block_is_reported_with_its_page_line(tmp_path):
    page = "# t\n\n```python\nimport os\n\nraise RuntimeError('boom')\n```\n"
    (snippet,) = parse_snippets(page, "t.md")
    blocks = tmp_path / "b.json"
    blocks.write_text(json.dumps([[snippet.page, snippet.line, snippet.code]]))
    subprocess.run(
        [sys.executable, "-c", RUNNER, str(blocks), str(tmp_path / "r.json"), "30"], cwd=tmp_path, check=True
    )
    result = json.loads((tmp_path / "r.json").read_text())["t.md:4"]
    assert result["status"] == "failed"
    assert 'File "t.md", line 6' in result["detail"] and "boom" in result["detail"]
