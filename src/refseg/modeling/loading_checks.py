"""Checks of a local model folder made before ``from_pretrained`` builds (and allocates) the model.

A folder can describe a model that does not fit its weights: ``num_queries`` of 10^9 in ``config.json`` with
weights for 16 queries makes ``from_pretrained`` allocate the 10^9 rows before it compares shapes, until the
allocator fails. Here the safetensors headers (a few kilobytes, read without the tensor data) are compared
with the model built on the ``meta`` device (shapes only, no memory), and a contradiction is refused with the
config fields that cause it. A truncated or foreign weight file is named; so is a tokenizer file that makes
the ``tokenizers`` library fail or panic. After loading, :class:`CheckedFromPretrainedMixin` warns loudly when
weights were missing from the checkpoint (``docs/pipeline.md``, "Model folders").
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..validation import is_panic

__all__ = [
    "CheckedFromPretrainedMixin",
    "IncompleteCheckpointError",
    "MissingWeightsWarning",
    "ModelLoadingError",
    "check_config_fits_checkpoint",
    "check_tokenizer_file",
    "checkpoint_shapes",
    "is_panic",
    "safetensors_header",
]

MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header
_SHOWN = 10
_MIN_SUSPECT_INTEGER = 2**20  # config integers above this and above the checkpoint's size are refused


class ModelLoadingError(Exception):
    """A model source that refseg refuses to load (not a refseg model, unreadable weights); says why.

    It does not derive from ``ValueError`` / ``OSError`` on purpose: ``transformers.pipeline`` catches
    those while trying model classes and would bury the message under tracebacks.
    """


class IncompleteCheckpointError(ModelLoadingError):
    """A checkpoint that lacks weights of the model (or has them with other shapes); names the keys."""


class MissingWeightsWarning(UserWarning):
    """``from_pretrained`` initialised some weights at random because the checkpoint lacks them."""


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] if text else type(error).__name__


def safetensors_header(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` from the header of the safetensors file ``path``, without reading its data.

    Raises:
        ModelLoadingError: naming the file, when it is too short, its header is not valid, or it is
            truncated (the header places tensor data beyond the end of the file).
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if length < 2 or length > min(size - 8, MAX_HEADER_BYTES):
            raise ModelLoadingError(
                f"cannot read {path}: not a safetensors file, or truncated ({size} bytes; the header length "
                f"field says {max(length, 0)} bytes)"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw)
        shapes, end = {}, 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape = tuple(int(d) for d in entry["shape"])
            start, stop = (int(o) for o in entry["data_offsets"])
            if any(d < 0 for d in shape) or not 0 <= start <= stop:
                raise ValueError(f"invalid entry for {name}")
            shapes[name], end = shape, max(end, stop)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelLoadingError(
            f"cannot read {path}: its safetensors header is invalid ({_first_line(err)})"
        ) from err
    if 8 + length + end > size:
        raise ModelLoadingError(
            f"cannot read {path}: the file is truncated (its header describes {8 + length + end} bytes, the file "
            f"has {size}); copy or download it again"
        )
    return shapes


def _torch_file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of a ``torch.save`` state dict, read onto the ``meta`` device (no tensor data in memory)."""
    try:
        try:
            state = torch.load(path, map_location="meta", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="meta", weights_only=True)
    except Exception as err:  # noqa: BLE001 (truncated, foreign or unsafe file)
        raise ModelLoadingError(f"cannot read {path} as a state dict: {_first_line(err)}") from err
    if not isinstance(state, dict):
        raise ModelLoadingError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {str(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def _shard_files(folder: Path, index: Path) -> list[Path]:
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelLoadingError(f"cannot read {index}: {_first_line(err)}") from err
    if any(not isinstance(name, str) or Path(name).name != name for name in names):
        raise ModelLoadingError(f"{index} names shard files outside its folder")
    files = [folder / name for name in names]
    for file in files:
        if not file.is_file():
            raise ModelLoadingError(f"{index} lists {file.name}, which is not in {folder}")
    return files


def checkpoint_shapes(folder: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], list[Path]] | None:
    """Shapes of every tensor in the folder's weights and the files read, without loading tensor data.

    Reads ``model.safetensors`` (or its shards: their headers) as transformers would, else
    ``pytorch_model.bin`` (or its shards, onto the ``meta`` device). ``None`` when the folder holds neither.
    """
    folder = Path(folder)
    for name, read in (("model.safetensors", safetensors_header), ("pytorch_model.bin", _torch_file_shapes)):
        single, index = folder / name, folder / f"{name}.index.json"
        if single.is_file():
            files = [single]
        elif index.is_file():
            files = _shard_files(folder, index)
        else:
            continue
        shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            shapes.update(read(file))
        return shapes, files
    return None


def _integers(values: Any, prefix: str = "") -> Iterator[tuple[str, int]]:
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _integers(value, f"{prefix}{key}.")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, int) and not isinstance(item, bool):
                    yield f"{prefix}{key}[{i}]", item
        elif isinstance(value, int) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def _names(keys: list[str], sep: str = ", ") -> str:
    shown = sep.join(keys[:_SHOWN])
    return shown + (f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _build_on_meta(config: Any, model_class: type | None) -> torch.nn.Module:
    from transformers import AutoModel

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model_class(config) if model_class is not None else AutoModel.from_config(config)


def check_config_fits_checkpoint(
    config: Any, folder: str | os.PathLike, model_class: type | None = None
) -> None:
    """Refuse a folder whose ``config.json`` builds weights of other shapes than its safetensors files hold.

    The model is built on the ``meta`` device (no memory) and its shapes compared with the file headers
    (:func:`safetensors_header`). Before that, a config integer above both 2^20 and the number of values
    stored in the checkpoint is refused outright (no weights that small can describe it; a layer count of
    10^9 would take forever even on ``meta``). Weights missing from the files are not refused here
    (``from_pretrained`` reports them).

    Raises:
        ModelLoadingError: a weight file is unreadable or truncated (named).
        IncompleteCheckpointError: config and weights disagree; names the weights and the config fields.
    """
    found = checkpoint_shapes(folder)
    if found is None:
        return
    shapes, files = found
    where = ", ".join(str(f) for f in files)
    stored = sum(math.prod(s) for s in shapes.values())
    values = dict(_integers(config.to_dict()))
    huge = [f"{k} = {v}" for k, v in values.items() if v > max(stored, _MIN_SUSPECT_INTEGER)]
    if huge:
        raise IncompleteCheckpointError(
            f"{Path(folder) / 'config.json'} does not describe the weights in {where}: {_names(huge)} is larger "
            f"than the {stored:,} values they hold; fix config.json (refused before building the model)"
        )
    try:
        model = _build_on_meta(config, model_class)
    except Exception as err:  # noqa: BLE001 (a negative size, a size of the wrong type...)
        raise ModelLoadingError(
            f"{Path(folder) / 'config.json'} does not describe a buildable model: {_first_line(err)}"
        ) from err
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = getattr(model, "base_model_prefix", "")
    if not expected.keys() & shapes.keys() and prefix:  # a base model's weights under the task model, or back
        shapes = {f"{prefix}.{k}": v for k, v in shapes.items()} | {
            k.removeprefix(f"{prefix}."): v for k, v in shapes.items()
        }
    mismatched = sorted(k for k in expected.keys() & shapes.keys() if expected[k] != shapes[k])
    if not mismatched:
        return
    causes: dict[str, None] = {}
    for key in mismatched:
        for built, stored_dim in zip(expected[key], shapes[key]):
            if built != stored_dim:
                causes.update(dict.fromkeys(f"{k} = {v}" for k, v in values.items() if v == built))
    details = [f"{k}: checkpoint {shapes[k]}, config builds {expected[k]}" for k in mismatched]
    cause = f"; config values giving those sizes: {_names(list(causes))}" if causes else ""
    raise IncompleteCheckpointError(
        f"{Path(folder) / 'config.json'} does not describe the weights in {where}: {len(mismatched)} weight(s) of "
        f"another shape: {_names(details, '; ')}{cause}. Fix config.json or the weights (refused before building the "
        "model)"
    )


def check_tokenizer_file(folder: str | os.PathLike) -> None:
    """Load the folder's ``tokenizer.json`` and encode a probe sentence; a failure or a panic names the file.

    A broken file can make the Rust ``tokenizers`` library panic (``pyo3_runtime.PanicException``, which
    ``except Exception`` does not catch). Does nothing when the folder has no ``tokenizer.json``.

    Raises:
        ModelLoadingError: the tokenizers library cannot load or run the file.
    """
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(path)).encode("the red circle, left of 2 small squares. é 日本")
    except BaseException as err:  # noqa: BLE001 (PanicException derives from BaseException)
        if not (is_panic(err) or isinstance(err, Exception)):
            raise
        what = "panicked on it" if is_panic(err) else "cannot use it"
        raise ModelLoadingError(
            f"cannot load the tokenizer {path}: the tokenizers library {what} ({_first_line(err)}); the file is "
            "broken or from an incompatible version"
        ) from None


def _local_folder(source: Any, subfolder: str | None) -> Path | None:
    if not isinstance(source, str | os.PathLike):
        return None
    path = Path(os.fspath(source)).expanduser() / (subfolder or "")
    return path if path.is_dir() else None


_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def _hub_snapshot(source: Any, kwargs: dict[str, Any]) -> Path | None:
    """The cache folder of a Hub model's weights, fetched as ``from_pretrained`` would (None when unavailable).

    Only the weight files are fetched here (``from_pretrained`` would fetch them anyway), so that they can be
    checked before the model is built. Any failure returns None and leaves the reporting to ``from_pretrained``.
    """
    if not isinstance(source, str):
        return None
    from transformers.utils import cached_file

    hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
    quiet = {"_raise_exceptions_for_missing_entries": False, "_raise_exceptions_for_connection_errors": False}
    try:
        for name in ("model.safetensors", "model.safetensors.index.json"):
            path = cached_file(source, name, **hub, **quiet)
            if path is None:
                continue
            if name.endswith(".index.json"):
                for shard in sorted(set(json.loads(Path(path).read_text())["weight_map"].values())):
                    if Path(shard).name != shard or cached_file(source, shard, **hub, **quiet) is None:
                        return None
            return Path(path).parent
    except Exception:  # noqa: BLE001 (offline, gated, malformed index: from_pretrained reports it)
        return None
    return None


def warn_missing_weights(model: Any, info: dict, source: Any) -> None:
    """A :class:`MissingWeightsWarning` with the count and names of the weights ``from_pretrained`` made up."""
    missing = sorted(str(k) for k in info.get("missing_keys") or ())
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ())
    if not missing and not mismatched:
        return
    total = len(model.state_dict())
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {total} weights are missing from the checkpoint ({_names(missing)})")
    if mismatched:
        parts.append(f"{len(mismatched)} had another shape ({_names(mismatched)})")
    warnings.warn_explicit(  # one line, no source line (the caller is transformers' AutoModel)
        f"{type(model).__name__}.from_pretrained({os.fspath(source)!r}): {'; '.join(parts)}; they were initialised "
        "at RANDOM: fine to start a fine-tuning, meaningless answers for inference. "
        "refseg.pipelines.load_referring_segmentation_model refuses such a checkpoint.",
        MissingWeightsWarning,
        filename="refseg",
        lineno=0,
        module="refseg.modeling.loading_checks",
    )


class CheckedFromPretrainedMixin:
    """``from_pretrained`` of refseg's models with the folder checks of this module.

    For a local folder or a Hub model (its weight files are fetched first, as ``from_pretrained`` would): the
    weight files are checked against the config before the model is built
    (:func:`check_config_fits_checkpoint`; skipped with ``ignore_mismatched_sizes=True``), and after loading
    a :class:`MissingWeightsWarning` names the weights left random (transformers itself only logs them).
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        """``PreTrainedModel.from_pretrained`` with the checks above; same arguments and return value."""
        from transformers import PreTrainedConfig

        folder = _local_folder(pretrained_model_name_or_path, kwargs.get("subfolder"))
        if folder is None and kwargs.get("state_dict") is None:
            folder = _hub_snapshot(pretrained_model_name_or_path, kwargs)
        if folder is not None and kwargs.get("state_dict") is None:
            config = kwargs.get("config")
            if not isinstance(config, PreTrainedConfig):
                overrides = {k: v for k, v in kwargs.items() if k not in ("config", "output_loading_info")}
                try:
                    config, _ = cls.config_class.from_pretrained(
                        pretrained_model_name_or_path, return_unused_kwargs=True, **overrides
                    )
                except Exception:  # noqa: BLE001 (from_pretrained below reports a bad config in its own words)
                    config = None
            if config is None or kwargs.get("ignore_mismatched_sizes"):
                checkpoint_shapes(folder)  # still name a truncated or foreign weight file
            else:
                check_config_fits_checkpoint(config, folder, cls)
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        warn_missing_weights(model, info, pretrained_model_name_or_path)
        return (model, info) if want_info else model
