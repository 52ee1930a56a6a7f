"""Where a converter writes: a folder written next to its destination and renamed into place at the end.

``refseg convert`` checks everything before writing; :func:`write_folder` then makes the write itself
all-or-nothing, so that an error (a full disk, an interrupted run) leaves no half-written folder and keeps a
previous conversion in place. :func:`check_destination` refuses to replace a folder holding anything but a
previous conversion of the same model type; :func:`parse_overrides` reads ``--config-overrides``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["check_destination", "parse_overrides", "write_folder"]


def check_destination(output_dir: Path, model_type: str, model_name: str) -> None:
    """Refuse an ``output_dir`` that is a file, or a non-empty folder that is not a converted ``model_type``."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output {output_dir} is a file, not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        try:
            found = json.loads((output_dir / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            found = None
        if found != model_type:
            raise ValueError(
                f"--output {output_dir} exists and holds other files (not a converted {model_name} folder): "
                "choose a new or empty folder"
            )


def write_folder(output_dir: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(folder)`` on a temporary folder next to ``output_dir``, then put it in place.

    On any error the temporary folder is removed and ``output_dir`` is left as it was; a previous conversion in
    ``output_dir`` is replaced only once the new one is complete.
    """
    output_dir = output_dir.resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.converting-", dir=output_dir.parent))
    try:
        write(staging)
        if output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
        if output_dir.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.previous-", dir=output_dir.parent))
            previous.rmdir()
            output_dir.rename(previous)
            try:
                staging.rename(output_dir)
            except OSError:
                previous.rename(output_dir)  # put the previous conversion back
                raise
            shutil.rmtree(previous, ignore_errors=True)
        else:
            staging.rename(output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def parse_overrides(text: str | None) -> dict[str, Any]:
    """``--config_overrides`` JSON -> dict (clear error on bad JSON)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--config_overrides is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"--config_overrides must be a JSON object, got {type(value).__name__}")
    return value
