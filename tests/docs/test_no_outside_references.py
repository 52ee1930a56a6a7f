"""Code, comments and docs cite papers and pages under ``docs/``, never files outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [
    "src",
    "docs",
    "examples",
    "tests",
    "scripts",
    "benchmarks",
    "model_cards",
    "README.md",
    "CONTRIBUTING.md",
]
SUFFIXES = {".py", ".md", ".sh", ".toml", ".yml", ".yaml", ".json", ".txt", ".cpp", ".h", ".cu"}
# design notes and shared folders of the founders' workspace, which are not part of the repository
OUTSIDE = re.compile(
    r"notes/|papers/[a-z_-]+\.md|DESIGN\.md|hf_conventions|originals\.md|instancevg_port|metris_presence_spec|"
    r"\bkernel\.md\b|\busers\.md\b|/work/shared|\.\./shared/"
)


def _files():
    for entry in SCANNED:
        path = ROOT / entry
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def test_nothing_cites_files_outside_the_repository():
    hits = []
    for path in _files():
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits)
