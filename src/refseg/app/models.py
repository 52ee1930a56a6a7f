"""The models one app offers: fixed when the app starts, chosen by label, nothing else loads.

``refseg app --model A B`` lists model folders or Hub ids; the page shows one dropdown entry (a label)
per model. A request naming anything else is refused without echoing it, and a model that fails to load
is reported by its label only (the details go to the server's log), so the page never reveals server
paths that the operator did not configure.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEMO_ALIASES", "DEMO_MODEL", "SegmenterCache", "model_choices"]

logger = logging.getLogger(__name__)

#: the dropdown's label for the demo model bundled with refseg
DEMO_MODEL = "refseg demo model (bundled)"
#: what names the bundled demo model in a model list (``refseg app --model demo path/to/model``)
DEMO_ALIASES = ("demo", DEMO_MODEL)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _label_and_source(entry: str | None) -> tuple[str, str | None]:
    """``(label, source)`` of one configured model; ``source`` None is the bundled demo model."""
    text = (entry or "").strip()
    if text in ("", *DEMO_ALIASES):
        return DEMO_MODEL, None
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--model {text}: not a model folder (it is a file)")
        return path.resolve().name or text, str(path)
    if not _HUB_ID.match(text) or text.startswith((".", "~")):
        raise ValueError(f"--model {text}: no such model folder (nor a Hub id of the form 'user/name')")
    return text, text


def model_choices(models: Sequence[str | None] | None = None) -> dict[str, str | None]:
    """``{label: source}`` for the configured ``models`` in order (default: the bundled demo model).

    A folder is labelled by its name, a Hub id by itself; a repeated model is listed once, and a label
    shared by two different models becomes the model as given. Raises ValueError naming a missing
    folder or a file.
    """
    choices: dict[str, str | None] = {}
    for entry in models or [None]:
        label, source = _label_and_source(entry)
        if source in choices.values():
            continue
        if label in choices:
            label = str(entry).strip()
        choices[label] = source
    return choices


class SegmenterCache:
    """Pipelines of the configured models, by label; safe to share between request threads.

    ``models`` is the list given to ``refseg app --model`` (default: the bundled demo model). Keeps
    the ``max_models`` most recently used pipelines loaded.
    """

    def __init__(
        self, device: str | None = None, max_models: int = 2, models: Sequence[str | None] | None = None
    ) -> None:
        self.device = device
        self.max_models = max_models
        self.choices = model_choices(models)
        self._pipelines: dict[str, tuple[Any, str]] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        """The dropdown's entries, the default first."""
        return list(self.choices)

    def resolve(self, model: str | None) -> str:
        """The label of ``model`` (a label or a configured source; empty: the default model).

        Raises ValueError listing the labels for anything that was not configured.
        """
        if model is not None and not isinstance(model, str):
            raise ValueError(f"This app offers only these models: {', '.join(self.labels)}.")
        text = (model or "").strip()
        if not text:
            return self.labels[0]
        if text in self.choices:
            return text
        for label, source in self.choices.items():
            if text == source or (source is None and text in DEMO_ALIASES):
                return label
        raise ValueError(f"This app offers only these models: {', '.join(self.labels)}.")

    def get(self, model: str | None) -> tuple[Any, str]:
        """``(pipeline, model path or id)`` for a configured ``model``, loading it on first use."""
        from ..pipelines.loading import load_referring_segmentation_pipeline

        label = self.resolve(model)
        with self._lock:
            if label in self._pipelines:
                self._pipelines[label] = self._pipelines.pop(label)  # most recently used last
                return self._pipelines[label]
            try:
                loaded = load_referring_segmentation_pipeline(self.choices[label], self.device)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - reported by label, logged in full
                logger.error("refseg app: could not load the model %r: %s", label, err)
                raise ValueError(
                    f"The model '{label}' could not be loaded; the server's log says why."
                ) from None
            self._pipelines[label] = loaded
            while len(self._pipelines) > self.max_models:
                self._pipelines.pop(next(iter(self._pipelines)))
            return loaded
