"""Keyword-argument checks for the ``forward`` of refseg models.

Task models keep ``**kwargs`` in their signature (the transformers convention) but must not ignore a
misspelt argument: ``labels=`` instead of ``mask_labels=`` would otherwise silently return no loss.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["reject_unknown_kwargs"]


def reject_unknown_kwargs(kwargs: Mapping[str, Any], function: Callable[..., Any]) -> None:
    """Raise ``TypeError`` naming every key of ``kwargs`` (with a close parameter name of ``function``).

    Call it first thing in a ``forward(self, ..., **kwargs)``: ``reject_unknown_kwargs(kwargs, self.forward)``.
    """
    if not kwargs:
        return
    parameters = [
        name
        for name, p in inspect.signature(function).parameters.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL) and name != "self"
    ]
    owner = getattr(function, "__qualname__", getattr(function, "__name__", "forward"))
    described = []
    for name in kwargs:
        close = difflib.get_close_matches(name, parameters, n=1, cutoff=0.5)
        if not close:
            close = [p for p in parameters if p.endswith(f"_{name}") or p.startswith(f"{name}_")][:1]
        described.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise TypeError(
        f"{owner}() got unexpected keyword argument(s) {', '.join(described)}; "
        f"it accepts {', '.join(parameters)}"
    )
