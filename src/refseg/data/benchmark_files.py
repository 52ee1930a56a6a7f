"""Finding the official files under a user-given root (the layouts in ``docs/data.md``, "Benchmark builders")."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .validate import RefsegDataError, check_regular_file


def find_path(root: str | os.PathLike, candidates: Sequence[str], what: str, is_dir: bool = False) -> Path:
    """First existing ``root / candidate``; a clear error listing every tried path otherwise. A candidate
    file that exists but is not a regular file (a FIFO, a link to ``/dev/zero``) is refused, not skipped."""
    root = Path(root)
    tried = [root / c for c in candidates]
    for path in tried:
        if is_dir and path.is_dir():
            return path
        if not is_dir and path.exists():
            return check_regular_file(path, f"{what} not found: {path}")
    raise FileNotFoundError(f"{what} not found; tried: {', '.join(str(p) for p in tried)}")


def annotation_files(root, folders: Sequence[str], refs_names: Sequence[str]) -> tuple[Path, Path]:
    """``(refs_file, instances.json)`` in ``root`` or ``root/<folder>`` (e.g. ``root/grefcoco``)."""
    for name in refs_names:  # built from split_by, which must not reach outside root
        if "/" in name or "\\" in name or ".." in name or "\x00" in name:
            raise RefsegDataError(f"invalid refs file name {name!r} (check split_by)")
    dirs = ["."] + list(folders)
    refs = find_path(root, [f"{d}/{n}" for d in dirs for n in refs_names], "refs file")
    instances = find_path(refs.parent, ["instances.json"], "instances.json (next to the refs file)")
    return refs, instances


def image_folder(root, image_dir, folder: str) -> Path:
    """``image_dir`` if given, else ``root/images/<folder>``, ``root/<folder>`` or ``root/../images/<folder>``."""
    if image_dir is not None:
        return find_path(image_dir, ["."], "image folder", is_dir=True)
    return find_path(
        root, [f"images/{folder}", folder, f"../images/{folder}"], f"image folder '{folder}'", is_dir=True
    )
