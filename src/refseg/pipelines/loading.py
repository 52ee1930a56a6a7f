"""Loading refseg models for the pipeline and the CLI, refusing what would silently run wrong.

``load_referring_segmentation_model`` checks, before and after ``from_pretrained``, that the source
exists (a missing folder says so instead of an invalid Hub id error), that it holds a refseg model,
that its weight files can be read (errors name the file), that ``config.json`` fits the shapes in the
safetensors headers before the model is built (``refseg.modeling.loading_checks``), that its tokenizer file
loads without a failure or a panic of the tokenizers library, and that no weight is missing or has the
wrong shape (``from_pretrained`` would otherwise initialise those layers at random). The
``referring-segmentation`` pipeline loads its model through ``ReferringSegmentationModelLoader``, so
``pipeline("referring-segmentation", model=PATH)`` gets the same checks.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from ..error_messages import one_line
from ..modeling.loading_checks import (
    IncompleteCheckpointError,
    MissingWeightsWarning,
    ModelLoadingError,
    check_tokenizer_file,
)
from ..models import model_types

__all__ = [
    "IncompleteCheckpointError",
    "ModelLoadingError",
    "ReferringSegmentationModelLoader",
    "check_model_source",
    "check_refseg_model_type",
    "load_referring_segmentation_model",
    "load_referring_segmentation_pipeline",
]

_HUB_KWARGS = (
    "revision",
    "token",
    "cache_dir",
    "local_files_only",
    "subfolder",
    "trust_remote_code",
    "_commit_hash",
)
_SHOWN_KEYS = 10


def _looks_like_hub_id(source: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def check_model_source(source: str | os.PathLike) -> None:
    """Refuse a local model path that does not exist or is not a model folder.

    A string that cannot be a Hub id (absolute or relative paths such as ``./model``, ``a/b/c``) and
    is not an existing folder gets ``FileNotFoundError("no such model folder: ...")``; an existing
    folder without ``config.json`` gets :class:`ModelLoadingError`.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadingError(
                f"{text} is a file, not a model folder (expected a folder with config.json)"
            )
        if not (path / "config.json").is_file():
            raise ModelLoadingError(f"{text} is not a refseg model folder: it has no config.json")
        return
    if not _looks_like_hub_id(text):
        raise FileNotFoundError(f"no such model folder: {text}")


def check_refseg_model_type(model_type: str | None, source: str) -> None:
    """Raise :class:`ModelLoadingError` unless ``model_type`` is one of refseg's architectures."""
    known = model_types()
    if model_type not in known:
        raise ModelLoadingError(
            f"{source} holds a {model_type!r} model, not a refseg referring-segmentation model "
            f"(refseg model types: {', '.join(known)})"
        )


def _weight_files(source: str) -> str:
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
        if files:
            return ", ".join(str(path / f) for f in files)
    return f"the weights of {source}"


def _keys(keys: Any) -> str:
    keys = sorted(str(k) for k in keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" ... and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def _hub_file(source: str, name: str, kwargs: dict[str, Any]) -> Path | None:
    """``name`` of the Hub model ``source`` from the cache or the Hub; None when it cannot be had."""
    from transformers.utils import cached_file

    hub = {
        k: kwargs[k] for k in _HUB_KWARGS if k in kwargs and k not in ("trust_remote_code", "_commit_hash")
    }
    try:
        path = cached_file(
            source,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub,
        )
    except Exception:  # noqa: BLE001 (gated, offline: the pipeline reports it when it loads the tokenizer)
        return None
    return Path(path) if path else None


def load_referring_segmentation_model(source: str | os.PathLike, **kwargs: Any):
    """``AutoModel.from_pretrained(source)`` for a refseg model, refusing anything it would load wrongly.

    Args:
        source: a local model folder or a Hub id.
        **kwargs: forwarded to ``from_pretrained`` (``dtype``, ``revision``, ``device_map``...).

    Raises:
        FileNotFoundError: a local path that does not exist, or a Hub id that cannot be fetched.
        ModelLoadingError: not a model folder, not a refseg model, an unreadable or truncated weight file,
            or a tokenizer file the tokenizers library fails or panics on (each named).
        IncompleteCheckpointError: weights missing from the checkpoint or with other shapes, or a config that
            does not describe the weights (named; checked before the model is built for local folders).
    """
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel

    text = os.fspath(source)
    check_model_source(text)
    hub_kwargs = {k: v for k, v in kwargs.items() if k in _HUB_KWARGS}
    try:
        config = AutoConfig.from_pretrained(text, **hub_kwargs)
    except OSError as err:
        if Path(text).expanduser().exists():
            raise
        raise FileNotFoundError(
            f"no such model folder, and no Hub model {text} could be loaded: {one_line(err)}"
        ) from err
    check_refseg_model_type(getattr(config, "model_type", None), text)
    folder = Path(text).expanduser() / (kwargs.get("subfolder") or "")
    if folder.is_dir():
        check_tokenizer_file(folder)
    else:  # a Hub model: its tokenizer file, fetched as the pipeline would
        tokenizer_file = _hub_file(text, "tokenizer.json", kwargs)
        if tokenizer_file is not None:
            check_tokenizer_file(tokenizer_file.parent)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("output_loading_info", "config")}
    try:
        with warnings.catch_warnings():  # refused below with the same names
            warnings.simplefilter("ignore", MissingWeightsWarning)
            model, info = AutoModel.from_pretrained(text, config=config, output_loading_info=True, **kwargs)
    except SafetensorError as err:
        raise ModelLoadingError(f"cannot read {_weight_files(text)}: {one_line(err)}") from err
    except (OSError, RuntimeError) as err:
        if "ignore_mismatched_sizes" in str(err):  # weights not checkable before building (not fetched):
            kwargs["ignore_mismatched_sizes"] = True  # load again only to name the weights of other shapes
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MissingWeightsWarning)
                model, info = AutoModel.from_pretrained(
                    text, config=config, output_loading_info=True, **kwargs
                )
        elif "safetensors" in str(err).lower() or "header" in str(err).lower():
            raise ModelLoadingError(f"cannot read {_weight_files(text)}: {one_line(err)}") from err
        else:
            raise
    missing, mismatched = info.get("missing_keys") or (), info.get("mismatched_keys") or ()
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing weight(s): {_keys(missing)}")
        if mismatched:
            parts.append(
                f"{len(mismatched)} weight(s) of another shape: {_keys(k[0] if isinstance(k, tuple) else k for k in mismatched)}"
            )
        raise IncompleteCheckpointError(
            f"the checkpoint {text} does not hold every weight of {type(model).__name__} ({'; '.join(parts)}); "
            "loading it would leave those layers random"
        )
    return model


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def check_has_tokenizer(source: str | os.PathLike, model_type: str | None = None) -> None:
    """Refuse a local model folder without a tokenizer (e.g. ``refseg convert`` run without ``--tokenizer``)."""
    path = Path(os.fspath(source)).expanduser()
    if not path.is_dir() or any((path / name).is_file() for name in _TOKENIZER_FILES):
        return
    if model_type == "instancevg":
        fix = "convert the checkpoint again with --tokenizer (`refseg convert instancevg CHECKPOINT.pth --output DIR --tokenizer beit3.spm`)"
    else:
        fix = "save the model's processor (with its tokenizer) into the folder"
    raise ModelLoadingError(f"{os.fspath(source)} has no tokenizer: {fix}")


class ReferringSegmentationModelLoader:
    """The ``pt_model`` of the ``referring-segmentation`` task: ``from_pretrained`` with refseg's checks."""

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, *args: Any, **kwargs: Any):
        """Load through :func:`load_referring_segmentation_model` (``*args`` are not used); a local folder
        without a tokenizer is then refused (the pipeline needs one to read the sentences)."""
        kwargs.pop("_from_pipeline", None)
        model = load_referring_segmentation_model(source, **kwargs)
        check_has_tokenizer(source, getattr(model.config, "model_type", None))
        return model


def load_referring_segmentation_pipeline(model: str | os.PathLike | None = None, device: str | None = None):
    """``pipeline("referring-segmentation")`` for ``model`` (default: the bundled demo model), for the CLI
    and the web app.

    The model goes through :func:`load_referring_segmentation_model`: a missing folder, a folder that is
    not a refseg model, unreadable weights or missing weights are refused with one clear message, and
    transformers' own warnings and progress bars are silenced while loading. ``device`` defaults to
    ``cuda:0`` when CUDA is available, else ``cpu``. Returns ``(pipeline, model path or id)``.
    """
    import torch
    from transformers import AutoProcessor, pipeline
    from transformers.utils import logging as hf_logging

    import refseg

    if model is None:
        try:
            path = refseg.demo_model_path()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; pass a trained model with --model PATH_OR_HUB_ID") from err
    else:
        path = os.fspath(model)
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # refseg reports problems itself, in one line
    hf_logging.disable_progress_bar()
    try:
        loaded = load_referring_segmentation_model(path)
        try:
            processor = AutoProcessor.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot load the processor of {path}: {err}") from err
        return pipeline("referring-segmentation", model=loaded, processor=processor, device=device), path
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
