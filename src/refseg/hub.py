"""Model cards and Hub uploads for refseg models .

``model_card`` builds a ``huggingface_hub.ModelCard`` whose front matter has ``library_name: refseg``,
``pipeline_tag: image-segmentation`` (the Hub has no referring-segmentation task), GRES tags and the
evaluation results as ``model-index`` (``EvalResult``); the body holds a usage snippet, the exact
training command, its wall time and a metrics table that names each metric's definition.
``push_to_hub`` writes the card if missing and uploads a folder with ``HfApi``: never checkpoints, hidden
or temporary files (a crash-leftover ``.tmp-step_*`` folder), and never a file that holds the token.
:func:`redact_argv` / :func:`redact_secrets` remove tokens from what a training script records.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

__all__ = [
    "BASE_TAGS",
    "METRIC_DEFINITIONS",
    "UPLOAD_IGNORE_PATTERNS",
    "model_card",
    "push_to_hub",
    "redact_argv",
    "redact_mapping",
    "redact_secrets",
    "write_model_card",
]

REDACTED = "<redacted>"
# a flag whose value is a credential: --hub_token, --token, --hub-token, --api_key, --password, --secret
_SECRET_FLAG = re.compile(r"--?[\w-]*(token|password|secret|api[_-]?key)", re.IGNORECASE)
# what a Hugging Face access token looks like (hf_ followed by letters and digits)
_TOKEN_VALUE = re.compile(r"hf_[A-Za-z0-9]{20,}")
# checkpoints, hidden and temporary files (a save killed half-way leaves .tmp-step_<N>) are never uploaded
UPLOAD_IGNORE_PATTERNS = (
    "step_*",
    "epoch_*",
    "checkpoints/*",
    ".*",
    "*/.*",
    "*.partial",
    "*.tmp",
    "tmp*",
    "*/tmp*",
)

BASE_TAGS = [
    "refseg",
    "referring-expression-segmentation",
    "generalized-referring-expression-segmentation",
    "gres",
    "vision-language",
]

# what every reported number means (docs/metrics.md)
METRIC_DEFINITIONS = {
    "gIoU": "mean per-sample IoU; a no-target sample scores 1 if predicted empty, else 0 (ReLA)",
    "cIoU": "cumulative intersection / cumulative union over all samples (ReLA)",
    "N-acc": "share of no-target samples predicted as no-target",
    "T-acc": "share of target samples predicted as having a target",
    "mIoU": "mean per-sentence IoU (LAVT)",
    "oIoU": "overall intersection / overall union (LAVT)",
}

_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

> **Needs refseg**: install the refseg library (its README says how), then `import refseg` before loading. The import registers this model type and the `referring-segmentation` pipeline with transformers; without it, transformers does not know the model type and suggests updating Transformers.

{{ description }}

## Usage

```python
import refseg  # registers the model classes and the pipeline task
from transformers import pipeline

segmenter = pipeline("referring-segmentation", model="{{ model_id }}")
result = segmenter("image.png", "{{ example_sentence }}")
result["no_target"], result["score"], [inst["box"] for inst in result["instances"]]
```

or from the command line: `refseg predict --model {{ model_id }} --image image.png --text "{{ example_sentence }}"`.

## Evaluation

{{ metrics_table }}

## Training

{{ training_section }}
"""


def _is_secret_flag(arg: str) -> bool:
    return _SECRET_FLAG.fullmatch(arg.split("=", 1)[0]) is not None


def redact_secrets(text: str) -> str:
    """``text`` with every token-like value (``hf_...``) and the value of every secret flag replaced."""
    text = _TOKEN_VALUE.sub(REDACTED, text)
    return re.sub(
        r"(--?[\w-]*(?:token|password|secret|api[_-]?key))(=|\s+)('[^']*'|\"[^\"]*\"|\S+)",
        lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}",
        text,
        flags=re.IGNORECASE,
    )


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line without credentials: values of secret flags and ``hf_...`` tokens become ``<redacted>``."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg.startswith("-") and _is_secret_flag(arg):
            if "=" in arg:
                out.append(f"{arg.split('=', 1)[0]}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
        else:
            out.append(_TOKEN_VALUE.sub(REDACTED, arg))
    return out


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (e.g. ``vars(args)``) without secret entries (``hub_token``) and with ``hf_...`` strings redacted."""
    out = {}
    for key, value in values.items():
        if _SECRET_FLAG.fullmatch(f"--{key}"):
            continue
        if isinstance(value, str):
            value = _TOKEN_VALUE.sub(REDACTED, value)
        elif isinstance(value, Mapping):
            value = redact_mapping(value)
        out[key] = value
    return out


def _metrics_table(results: Mapping[str, Any], dataset: str, split: str, resolution: str | None) -> str:
    if not results:
        return "No evaluation results yet."
    rows = ["| metric | value | definition |", "|---|---|---|"]
    for name, value in results.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.append(f"| {name} | {value:.2f} | {METRIC_DEFINITIONS.get(name, '')} |")
    where = f"on {dataset} ({split})" + (f", masks compared at {resolution}" if resolution else "")
    return f"Results {where}, in percent:\n\n" + "\n".join(rows)


def model_card(
    model_id: str,
    *,
    model_type: str,
    description: str = "",
    results: Mapping[str, Any] | None = None,
    dataset_name: str = "synthetic referring scenes",
    dataset_type: str = "refseg/synthetic-scenes",
    dataset_split: str = "validation",
    resolution: str | None = None,
    training_command: str | None = None,
    wall_time_s: float | None = None,
    training_details: Mapping[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
    base_model: str | Sequence[str] | None = None,
    tags: Sequence[str] = (),
    license: str = "apache-2.0",
    example_sentence: str = "the red circle and the blue square",
) -> ModelCard:
    """A model card with front matter, usage, evaluation (``model-index``) and training sections.

    ``results`` maps metric names (e.g. ``gIoU``, ``cIoU``, ``N-acc``, ``T-acc``) to percentages;
    non-numeric entries (such as ``definition`` or ``resolution`` strings) are left out of the table.
    """
    results = dict(results or {})
    resolution = resolution or (
        results.get("resolution") if isinstance(results.get("resolution"), str) else None
    )
    eval_results = [
        EvalResult(
            task_type="image-segmentation",
            task_name="Generalized referring expression segmentation",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=name.lower(),
            metric_name=name,
            metric_value=round(float(value), 4),
            metric_config=resolution,
        )
        for name, value in results.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    card_data = ModelCardData(
        model_name=model_id.split("/")[-1],
        library_name="refseg",
        pipeline_tag="image-segmentation",
        license=license,
        tags=list(dict.fromkeys([*BASE_TAGS, model_type, *tags])),
        datasets=list(datasets) if datasets else None,
        base_model=base_model,
        eval_results=eval_results or None,
    )
    lines = []
    if training_command:
        lines.append(f"Trained with:\n\n```bash\n{redact_secrets(training_command)}\n```")
    if wall_time_s is not None:
        lines.append(f"Wall time: {wall_time_s:.0f} s ({wall_time_s / 60:.1f} min).")
    if training_details:
        lines.append("\n".join(f"- {k}: {v}" for k, v in training_details.items()))
    return ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        model_id=model_id,
        description=description or f"A `{model_type}` referring-expression segmentation model for refseg.",
        example_sentence=example_sentence,
        metrics_table=_metrics_table(results, dataset_name, dataset_split, resolution),
        training_section="\n\n".join(lines) or "Not recorded.",
    )


def write_model_card(output_dir: str | os.PathLike, model_id: str | None = None, **kwargs) -> Path:
    """Write ``README.md`` (the model card) into ``output_dir``; returns its path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card = model_card(model_id or output_dir.name, **kwargs)
    path = output_dir / "README.md"
    card.save(path)
    return path


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload refseg model",
    ignore_patterns: Sequence[str] = UPLOAD_IGNORE_PATTERNS,
    card_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` (writing a model card first if it has none).

    Returns the URL of the upload commit. ``card_kwargs`` are passed to ``model_card`` and must
    include ``model_type`` when the folder has no README.md. Files matching ``ignore_patterns`` (checkpoints,
    hidden and temporary files) stay local; a text file that holds ``token`` stops the upload.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json; save the model with save_pretrained first")
    if not (folder / "README.md").is_file():
        if not card_kwargs or "model_type" not in card_kwargs:
            raise ValueError("the folder has no README.md; pass card_kwargs with at least model_type")
        write_model_card(folder, repo_id, **card_kwargs)
    if token:
        leaking = _files_holding(folder, token, ignore_patterns)
        if leaking:
            raise ValueError(f"refusing to upload {folder}: the token is written in {', '.join(leaking)}")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        ignore_patterns=list(ignore_patterns),
    )
    return str(getattr(info, "commit_url", info))


def _files_holding(folder: Path, secret: str, ignore_patterns: Sequence[str]) -> list[str]:
    """The uploadable text-like files (< 10 MB) of ``folder`` that contain ``secret``."""
    from huggingface_hub.utils import filter_repo_objects

    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    found = []
    for name in filter_repo_objects(names, ignore_patterns=list(ignore_patterns)):
        path = folder / name
        if path.stat().st_size < 10_000_000 and secret.encode() in path.read_bytes():
            found.append(name)
    return found
