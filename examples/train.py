#!/usr/bin/env python
"""Train and evaluate a refseg model with 🤗 Accelerate on any dataset of the refseg schema.

Follows transformers' ``run_*_no_trainer.py`` skeleton: argparse, an
``Accelerator``, ``accelerator.prepare``, ``accelerator.accumulate``, ``save_state`` checkpoints, a real
``--resume_from_checkpoint latest``, ``save_pretrained`` (model + processor) and a model card at the end.

Data: synthetic referring scenes by default (no download); ``--dataset_dir`` (a parquet file or folder,
or a ``save_to_disk`` folder) or ``--dataset_name`` (a Hub id) for real data in the refseg schema
(``docs/data.md``, "Row schema"). Metrics: GRES gIoU / cIoU / N-acc / T-acc (``refseg.metrics``, ReLA's
definitions) at the model input resolution.

Batch semantics: ``--per_device_train_batch_size`` samples go through the model on each process per
forward pass; one optimizer step sees the global batch
``per_device_train_batch_size x num_processes x gradient_accumulation_steps`` (printed at start), and its
losses divide by that global batch's counts and BatchNorm is synced across processes (``--sync_batchnorm``),
so every world size computes the same step (and every accumulation, but for BatchNorm's statistics, which
stay per forward pass; docs/training.md, "Multi-process math").
Optimisation defaults are the paper's (InstAlign Sec. 4.1): AdamW, lr 1e-4, linear decay to 1e-6.
``--recipe paper`` uses the model's paper recipe instead (``refseg.training.recipes``, ``docs/training.md``:
optimizer, learning-rate groups, weight decay, schedule, clipping); the optimisation flags override it.

Examples (see examples/README.md)::

    python examples/train.py --config_preset tiny --max_train_steps 20 --output_dir runs/tiny
    accelerate launch examples/train.py --config_preset demo --train_images 4000 --output_dir runs/demo
    accelerate launch examples/train.py --output_dir runs/demo --resume_from_checkpoint latest ...
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import math
import os
import random
import re
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoProcessor, AutoTokenizer

import refseg
from refseg.data.images import load_row_image, without_image_decoding
from refseg.data.sampler import ImageGroupedSampler, image_indices_of
from refseg.hub import push_to_hub, redact_argv, redact_mapping, write_model_card
from refseg.metrics import batch_mask_counts, gres_metrics
from refseg.modeling.pretrained import init_beit3_encoder, load_pretrained_encoders
from refseg.pipelines.loading import load_referring_segmentation_model
from refseg.training import (
    CheckpointError,
    CheckpointInfo,
    check_resume,
    checkpoint_name,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from refseg.training.distributed import loss_normalized_batches
from refseg.training.recipes import build_optimizer, get_recipe
from refseg.training.sync_batchnorm import convert_sync_batchnorm, resolve_sync_batchnorm

logger = get_logger(__name__)


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block) before any work."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _OneLineParser(description=__doc__.split("\n\n")[0])
    # model
    p.add_argument("--model_type", default="instalign", help="refseg architecture when training from scratch")
    p.add_argument("--config_preset", default="demo", help="named config of --model_type (tiny, demo, paper)")
    p.add_argument(
        "--config_overrides", default=None, help="JSON dict of config fields, e.g. '{\"num_queries\": 10}'"
    )
    p.add_argument("--model_name_or_path", default=None, help="start from a saved model (folder or Hub id)")
    p.add_argument(
        "--vision_model_name_or_path",
        default=None,
        help="pretrained vision encoder (Hub id or folder of a Swin checkpoint, e.g. "
        "microsoft/swin-base-patch4-window12-384-in22k as in the paper): its config replaces the preset's "
        "backbone config and its weights are loaded (training from scratch only)",
    )
    p.add_argument(
        "--text_model_name_or_path",
        default=None,
        help="pretrained text encoder (Hub id or folder of a RoBERTa/BERT checkpoint, e.g. roberta-base as "
        "in the paper): config, weights and, unless --tokenizer_name_or_path is given, tokenizer",
    )
    p.add_argument(
        "--tokenizer_name_or_path",
        default=None,
        help="tokenizer (default: the model's, else refseg's synthetic word-level tokenizer)",
    )
    p.add_argument("--max_text_length", type=int, default=32, help="sentences are padded/truncated to this")
    p.add_argument(
        "--init_from_beit3",
        default=None,
        help="BEiT-3 pretraining checkpoint (e.g. beit3_base_patch16_224.pth, or .safetensors) to start the "
        "BEiT-3 encoder of an InstanceVG model from; the image positions are interpolated to the model's size",
    )
    # data
    p.add_argument("--dataset_dir", default=None, help="parquet file/folder or a save_to_disk folder")
    p.add_argument("--dataset_name", default=None, help="Hub dataset id in the refseg schema")
    p.add_argument("--train_split", default="train")
    p.add_argument("--validation_split", default="validation")
    p.add_argument("--train_images", type=int, default=1000, help="synthetic training images")
    p.add_argument("--val_images", type=int, default=200, help="synthetic validation images")
    p.add_argument("--data_seed", type=int, default=0, help="seed of the synthetic scenes")
    p.add_argument("--image_size", type=int, default=None, help="model input size (default: the config's)")
    p.add_argument("--max_eval_samples", type=int, default=None)
    p.add_argument(
        "--group_by_image",
        action="store_true",
        help="shuffle whole images so that the expressions of one image are consecutive (a batch holds several "
        "sentences of the same picture) and the processor gets each image once with image_indices: InstAlign "
        "encodes it once per batch, the processors of the models that fuse the sentence into the image "
        "encoder repeat it for each sentence",
    )
    p.add_argument(
        "--tau_no",
        type=float,
        default=0.0,
        help="presence & plurality augmentation (Kim et al., AAAI 2026, Sec. 3.3): probability that a "
        "single-target sample of a training batch gets another sample's sentence and no target (paper: 0.05); "
        "works with every model; 0 disables",
    )
    p.add_argument(
        "--tau_multi",
        type=float,
        default=0.0,
        help="same augmentation: probability that a single-target sample joins the batch's 2x2 multi-target "
        "mosaic, whose sentences are joined with 'and' (paper: 0.05; raise --max_text_length, e.g. 64); 0 disables",
    )
    # optimisation
    p.add_argument("--per_device_train_batch_size", type=int, default=8)
    p.add_argument("--per_device_eval_batch_size", type=int, default=16)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument(
        "--sync_batchnorm",
        nargs="?",
        const="on",
        default="auto",
        choices=("auto", "on", "off"),
        help="BatchNorm statistics over all processes (METRIS, InstanceVG): 'auto' (default) turns it on for "
        "multi-process runs of models with BatchNorm; 'off' keeps per-process statistics (docs/training.md)",
    )
    p.add_argument(
        "--recipe",
        default="generic",
        help="optimizer, learning-rate groups, schedule and clipping: 'generic' (AdamW, lr 1e-4 linear to 1e-6, "
        "weight decay 0.01, clip 1.0), or 'paper' (the model's paper recipe; InstanceVG also 'paper-refcoco', "
        "METRIS also 'paper-grefcoco', which turns on its no-target classifier); "
        "the flags below override the recipe's values (see docs/training.md)",
    )
    p.add_argument(
        "--learning_rate",
        type=float,
        default=None,
        help="the recipe's main learning rate (generic: 1e-4); its other groups are scaled by the same factor",
    )
    p.add_argument("--min_learning_rate", type=float, default=None, help="end of the decay (generic: 1e-6)")
    p.add_argument("--weight_decay", type=float, default=None, help="(generic: 0.01)")
    p.add_argument("--adam_beta1", type=float, default=None, help="(generic: 0.9)")
    p.add_argument("--adam_beta2", type=float, default=None, help="(generic: 0.999)")
    p.add_argument("--adam_epsilon", type=float, default=None, help="(generic: 1e-8)")
    p.add_argument("--max_grad_norm", type=float, default=None, help="0 disables clipping (generic: 1.0)")
    p.add_argument("--num_warmup_steps", type=int, default=None, help="linear warm-up steps (generic: 0)")
    p.add_argument("--num_train_epochs", type=int, default=1)
    p.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    # checkpoints, evaluation, logging, output
    p.add_argument("--output_dir", required=True)
    p.add_argument("--checkpointing_steps", default=None, help="an integer (every n steps) or 'epoch'")
    p.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="a checkpoint folder (step_<N> or epoch_<N>), or 'latest': the complete one with the most steps",
    )
    p.add_argument(
        "--allow_inexact_resume",
        action="store_true",
        help="resume even if the checkpoint's RNG states cannot be restored (the run is then not exact)",
    )
    p.add_argument(
        "--stop_after_steps", type=int, default=None, help="stop early as if interrupted (testing)"
    )
    p.add_argument("--eval_steps", type=int, default=None, help="also evaluate every n steps")
    p.add_argument("--skip_eval", action="store_true", help="no evaluation (and no metrics in the card)")
    p.add_argument("--logging_steps", type=int, default=10)
    p.add_argument("--with_tracking", action="store_true")
    p.add_argument("--report_to", default="all")
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None)
    p.add_argument("--hub_token", default=None)
    args = p.parse_args(argv)
    if args.dataset_dir and args.dataset_name:
        p.error("pass at most one of --dataset_dir and --dataset_name")
    if args.model_name_or_path and (args.vision_model_name_or_path or args.text_model_name_or_path):
        p.error(
            "--vision_model_name_or_path/--text_model_name_or_path build a new model; "
            "they cannot be combined with --model_name_or_path"
        )
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id")
    if args.checkpointing_steps not in (None, "epoch") and not (
        str(args.checkpointing_steps).isdigit() and int(args.checkpointing_steps) > 0
    ):
        p.error(
            f"--checkpointing_steps must be a positive integer or 'epoch', got {args.checkpointing_steps!r}"
        )
    for flag in ("logging_steps", "max_train_steps", "num_train_epochs", "image_size", "eval_steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag} must be a positive integer, got {value}")
    if args.per_device_eval_batch_size < 1 or args.dataloader_num_workers < 0:
        p.error("--per_device_eval_batch_size must be >= 1 and --dataloader_num_workers >= 0")
    if args.config_overrides is not None:
        try:
            overrides = json.loads(args.config_overrides)
        except ValueError as error:
            p.error(f"--config_overrides is not valid JSON ({error}): {args.config_overrides!r}")
        if not isinstance(overrides, dict):
            p.error(
                f"--config_overrides must be a JSON object of config fields, got {args.config_overrides!r}"
            )
    if (args.learning_rate or 0) < 0 or (args.min_learning_rate or 0) < 0:
        p.error("--learning_rate and --min_learning_rate must be >= 0")
    if args.init_from_beit3 and args.model_name_or_path:
        p.error("--init_from_beit3 builds a new model; it cannot be combined with --model_name_or_path")
    if args.init_from_beit3 and args.model_type != "instancevg":
        p.error(
            f"--init_from_beit3 starts a BEiT-3 encoder: only --model_type instancevg has one, not {args.model_type!r}"
        )
    if args.init_from_beit3 and not os.path.isfile(args.init_from_beit3):
        p.error(f"--init_from_beit3: no such file {args.init_from_beit3}")
    if args.per_device_train_batch_size < 1 or args.gradient_accumulation_steps < 1:
        p.error("batch sizes and --gradient_accumulation_steps must be >= 1")
    if not (0.0 <= args.tau_no <= 1.0 and 0.0 <= args.tau_multi <= 1.0):
        p.error("--tau_no and --tau_multi must be probabilities in [0, 1]")
    return args


# ---------------------------------------------------------------------------------------------- data
def load_splits(args: argparse.Namespace, image_size: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, validation) datasets in the refseg schema (``refseg.data.load_referring_dataset``, or synthetic
    scenes), the images left encoded for refseg's loader in the collator."""
    if args.dataset_name or args.dataset_dir:
        ds = refseg.data.load_referring_dataset(
            args.dataset_name or args.dataset_dir,
            hub=bool(args.dataset_name),
            split_name=args.train_split,
            splits=(args.train_split, args.validation_split),
        )
    else:
        ds = without_image_decoding(
            refseg.data.synthetic_scene_splits(
                train=args.train_images,
                validation=args.val_images,
                test=0,
                seed=args.data_seed,
                image_size=image_size,
            )
        )
    if args.train_split not in ds:
        raise ValueError(f"the dataset has no split {args.train_split!r} (splits: {list(ds)})")
    train = ds[args.train_split]
    val = ds[args.validation_split] if args.validation_split in ds else None
    args.evaluated_split = args.validation_split  # recorded in training_args.json and the model card
    if val is None:
        split = train.train_test_split(test_size=0.1, seed=args.seed)
        train, val = split["train"], split["test"]
        args.evaluated_split = f"{args.train_split} (10% held out, seed {args.seed})"
    if args.max_eval_samples:
        val = val.select(range(min(args.max_eval_samples, len(val))))
    return drop_targeted_rows_without_instances(train), val


def drop_targeted_rows_without_instances(train: datasets.Dataset) -> datasets.Dataset:
    """Remove training rows with ``no_target=False`` but no instances (docs/data.md: builders keep them).

    The losses read an empty instance list as "no target", so such a row would teach the opposite of its
    label. The validation split is left as it is.
    """
    if "no_target" not in train.column_names:
        return train
    kept = train.filter(
        lambda no_target, instances: bool(no_target) or len(instances) > 0,
        input_columns=["no_target", "instances"],
    )
    if len(kept) < len(train):
        logger.warning(
            f"dropped {len(train) - len(kept)} training rows that are targeted (no_target=False) but have "
            "no instances (their annotations were all dropped by the dataset builder)",
            main_process_only=True,
        )
    return kept


INDEX_KEY = "__row_index__"


class IndexedRows(torch.utils.data.Dataset):
    """The rows of a map-style dataset, each with its index under ``INDEX_KEY`` (the augmentation's seed)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[int(index)], INDEX_KEY: int(index)}

    def __getitems__(self, indices: list[int]) -> list[dict]:
        return [self[i] for i in indices]


def augmentation_seed(seed: int, epoch: int, rows: list[dict]) -> int:
    """The augmentation's seed for one batch: a hash of the run seed, the epoch and the rows' indices.

    The draws of a batch depend on nothing else (not on the worker that collates it, nor on the batches
    before it), so they differ between epochs and batches, and a resumed run, which skips the batches
    already done without collating them, draws what an uninterrupted run draws.
    """
    keys = [row.get(INDEX_KEY, row.get("sent_id", row.get("sentence"))) for row in rows]
    digest = hashlib.sha256(json.dumps([seed, epoch, keys], default=str).encode()).digest()
    return int.from_bytes(digest[:8], "little")


class TrainCollator:
    """Rows -> model inputs: fixed-size images, sentences padded to ``max_text_length``, ``mask_labels``.

    With ``share_images`` the rows of one ``image_id`` (one picture in the dataset schema) share one entry of
    ``pixel_values``: each distinct image is processed once and ``image_indices`` pairs every expression
    with its image. ``augment`` (e.g. ``refseg.data.PresencePluralityAugmentation``) transforms the decoded
    rows of the batch first, its generator reseeded per batch with :func:`augmentation_seed` (call
    :meth:`set_epoch` before each epoch).
    """

    def __init__(
        self, processor, max_text_length: int, share_images: bool = False, augment=None, seed: int = 0
    ):
        self.processor, self.max_text_length, self.share_images = processor, max_text_length, share_images
        self.augment, self.seed, self.epoch = augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next batches belong to (part of the augmentation's seed)."""
        self.epoch = int(epoch)

    def __call__(self, rows: list[dict]) -> dict:
        if self.augment is not None:
            self.augment.rng.seed(augmentation_seed(self.seed, self.epoch, rows))
            rows = self.augment([{**row, "image": load_row_image(row)} for row in rows])
        images, image_indices = rows, None
        if self.share_images:
            first, image_indices = image_indices_of([row["image_id"] for row in rows])
            images = [rows[i] for i in first]
        batch = self.processor(
            images=[load_row_image(row) for row in images],  # allowed formats, pixel cap, EXIF orientation
            text=[row["sentence"] for row in rows],
            instances=[row["instances"] for row in rows],
            image_indices=image_indices,
            padding="max_length",
            max_length=self.max_text_length,
        )
        return dict(batch)


def make_collate_fn(
    processor, max_text_length: int, share_images: bool = False, augment=None, seed: int = 0
) -> TrainCollator:
    """A :class:`TrainCollator` (kept for callers of the earlier function)."""
    return TrainCollator(processor, max_text_length, share_images=share_images, augment=augment, seed=seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: NumPy's and Python's generators from the worker's torch seed, which differs per
    worker and per epoch (drawn from the loader's generator each time the workers start)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------------------------------------- model
def apply_sync_batchnorm(model, args: argparse.Namespace, accelerator):
    """``--sync_batchnorm``: BatchNorm synced across processes (SyncBatchNorm; refseg's own on CPU)."""
    if not resolve_sync_batchnorm(args.sync_batchnorm, model, accelerator.num_processes):
        return model
    accelerator.print(f"BatchNorm synced across {accelerator.num_processes} process(es) (--sync_batchnorm)")
    return convert_sync_batchnorm(model, accelerator.device.type)


def new_model_config(args: argparse.Namespace, tokenizer):
    """The config of a model trained from scratch: ``--config_preset`` with the recipe's model settings (e.g.
    METRIS's no-target classifier under ``paper-grefcoco``), ``--config_overrides``, ``--image_size``, the
    tokenizer's vocabulary and the pretrained encoders' architectures."""
    config_cls = type(AutoConfig.for_model(args.model_type))
    overrides = dict(get_recipe(args.recipe, args.model_type).model_config)
    overrides.update(json.loads(args.config_overrides) if args.config_overrides else {})
    if args.image_size:
        overrides["image_size"] = args.image_size
    text = dict(overrides.pop("text_config", {}))
    if args.text_model_name_or_path:  # the checkpoint's architecture; explicit overrides still win
        text = {**AutoConfig.from_pretrained(args.text_model_name_or_path).to_dict(), **text}
    text.setdefault("vocab_size", len(tokenizer))
    text.setdefault("pad_token_id", tokenizer.pad_token_id)
    if args.vision_model_name_or_path:
        vision = AutoConfig.from_pretrained(args.vision_model_name_or_path).to_dict()
        overrides["backbone_config"] = {**vision, **overrides.get("backbone_config", {})}
    return config_cls.preset(args.config_preset, text_config=text, **overrides)


def build_model_and_processor(args: argparse.Namespace):
    if args.model_name_or_path:
        model = load_referring_segmentation_model(args.model_name_or_path)  # strict: no random layers
        processor = AutoProcessor.from_pretrained(args.model_name_or_path)
        if args.tokenizer_name_or_path:  # keep the model's image processor, swap the tokenizer
            processor.tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path)
        if args.image_size:
            processor.image_processor.size = {"height": args.image_size, "width": args.image_size}
        return model, processor
    tokenizer_source = args.tokenizer_name_or_path or args.text_model_name_or_path
    if tokenizer_source:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    else:
        tokenizer = refseg.data.synthetic_tokenizer()
    config = new_model_config(args, tokenizer)
    model = AutoModel.from_config(config)
    if args.init_from_beit3:
        report = init_beit3_encoder(model, args.init_from_beit3)
        resized = report.interpolated_positions
        logger.info(
            f"BEiT-3 encoder: {len(report.loaded_keys)} tensors from {args.init_from_beit3}"
            + (
                f" (image positions {resized[0]}x{resized[0]} -> {resized[1]}x{resized[1]})"
                if resized
                else ""
            ),
            main_process_only=True,
        )
    if args.vision_model_name_or_path or args.text_model_name_or_path:
        reports = load_pretrained_encoders(
            model, vision=args.vision_model_name_or_path, text=args.text_model_name_or_path
        )
        for name, report in reports.items():
            logger.info(
                f"pretrained {name} encoder: {len(report.loaded_keys)} tensors from {report.source}",
                main_process_only=True,
            )
    image_processor_cls, processor_cls = refseg.models.processor_classes(args.model_type)
    processor = processor_cls(image_processor_cls(size=config.image_size), tokenizer)
    return model, processor


def resolve_recipe(args: argparse.Namespace, config):
    """``--recipe`` of the model with the optimisation flags that were given; fills the others into ``args``.

    A model whose ``config`` lacks a setting the recipe trains with (a loaded model, or ``--config_overrides``
    against it: e.g. METRIS without the no-target classifier under ``paper-grefcoco``) is refused in one line.
    """
    recipe = get_recipe(args.recipe, config.model_type)
    try:
        recipe.check_model_config(config)
    except ValueError as error:
        raise SystemExit(f"train.py: error: {error}") from None
    betas = None
    if args.adam_beta1 is not None or args.adam_beta2 is not None:
        betas = (
            recipe.betas[0] if args.adam_beta1 is None else args.adam_beta1,
            recipe.betas[1] if args.adam_beta2 is None else args.adam_beta2,
        )
    recipe = recipe.with_overrides(
        learning_rate=args.learning_rate,
        min_learning_rate=args.min_learning_rate,
        weight_decay=args.weight_decay,
        betas=betas,
        eps=args.adam_epsilon,
        max_grad_norm=args.max_grad_norm,
        warmup_steps=args.num_warmup_steps,
    )
    args.learning_rate, args.min_learning_rate = recipe.learning_rate, recipe.min_learning_rate
    args.weight_decay, (args.adam_beta1, args.adam_beta2) = recipe.weight_decay, recipe.betas
    args.adam_epsilon, args.max_grad_norm = recipe.eps, recipe.max_grad_norm
    args.num_warmup_steps = recipe.warmup_steps
    return recipe


# ---------------------------------------------------------------------------------------------- resume
def run_settings(args: argparse.Namespace, model_type: str, num_processes: int) -> dict:
    """What a checkpoint records of the run, and what a resume compares (``check_resume``)."""
    return {
        "model_type": model_type,
        "num_processes": num_processes,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "global_batch_size": args.per_device_train_batch_size
        * num_processes
        * args.gradient_accumulation_steps,
        "schedule_unit": "optimizer_step",
        "seed": args.seed,
        "tau_no": args.tau_no,
        "tau_multi": args.tau_multi,
    }


def resolve_checkpoint_once(spec: str, output_dir: str, accelerator) -> CheckpointInfo:
    """``--resume_from_checkpoint``, validated (checksums included) by the main process only.

    The other processes receive its choice (or its error) and read the same folder's marker without
    hashing the files again: one read of the checkpoint, not one per process.
    """
    from accelerate.utils import broadcast_object_list

    choice: list = [None]
    if accelerator.is_main_process:
        try:
            choice = [str(resolve_checkpoint(spec, output_dir).path)]
        except CheckpointError as error:
            choice = [f"error: {error}"]
    if accelerator.num_processes > 1:
        broadcast_object_list(choice)
    if choice[0].startswith("error: "):
        raise CheckpointError(choice[0][len("error: ") :])
    return read_checkpoint(choice[0], verify=False)


def set_schedule_position(scheduler, completed_steps: int) -> None:
    """Put the learning-rate schedule at ``completed_steps`` optimizer steps and set the learning rates.

    Checkpoints of earlier versions counted the schedule in process-steps (``num_processes`` per optimizer
    step), so resuming one with fewer processes jumped ahead (2 -> 1 process: to the floor at once); the
    position is the checkpoint's optimizer steps whatever wrote it.
    """
    inner = getattr(scheduler, "scheduler", scheduler)
    inner.last_epoch = completed_steps
    lrs = [base * factor(completed_steps) for base, factor in zip(inner.base_lrs, inner.lr_lambdas)]
    for group, lr in zip(inner.optimizer.param_groups, lrs):
        group["lr"] = lr
    inner._last_lr = lrs


def check_dataset_size(num_rows: int, batch_size: int, num_processes: int) -> None:
    """Refuse, in one line, a training split that does not fill one batch on every process."""
    if num_rows < batch_size * num_processes:
        raise SystemExit(
            f"train.py: error: the training split has {num_rows} rows, fewer than one batch "
            f"(--per_device_train_batch_size {batch_size} x {num_processes} process(es)); use a smaller batch or "
            "more data"
        )


# ---------------------------------------------------------------------------------------------- model card
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def hub_id_or_none(name: str | None) -> str | None:
    """``name`` if it reads as a Hub id (not a local file or folder), else None."""
    if not name or os.path.exists(name) or not _HUB_ID.fullmatch(name):
        return None
    return name


def declared_dataset_name(folder: str) -> str:
    """The benchmark a local dataset folder declares: ``stats.json``'s ``dataset`` (``refseg data prepare``),
    or a ``save_to_disk`` folder's ``dataset_info.json`` name; else the folder's name, never its path."""
    path = Path(folder)
    candidates = [(path / "stats.json", ("dataset",))]
    for info in [path / "dataset_info.json", *sorted(path.glob("*/dataset_info.json"))]:
        candidates.append((info, ("dataset_name", "builder_name", "config_name")))
    for file, keys in candidates:
        try:
            meta = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        for key in keys:
            if isinstance(meta, dict) and isinstance(meta.get(key), str) and meta[key] not in ("", "default"):
                return meta[key]
    return (path.stem if path.is_file() else path.name) or "local dataset"


def card_dataset_fields(args: argparse.Namespace) -> dict:
    """The model card's dataset: the real name and type, the evaluated split and the ``datasets:`` ids."""
    split = getattr(args, "evaluated_split", args.validation_split)
    if args.dataset_name:
        return dict(
            dataset_name=args.dataset_name,
            dataset_type=args.dataset_name,
            dataset_split=split,
            datasets=[args.dataset_name],
        )
    if args.dataset_dir:
        name = declared_dataset_name(args.dataset_dir)
        return dict(dataset_name=name, dataset_type=name, dataset_split=split, datasets=[name])
    return dict(
        dataset_name="synthetic referring scenes", dataset_type="refseg/synthetic-scenes", dataset_split=split
    )


def card_base_models(args: argparse.Namespace) -> list[str] | None:
    """``base_model:``: the Hub ids training started from (a saved model, or pretrained encoders)."""
    sources = [args.model_name_or_path] if args.model_name_or_path else []
    sources += [args.vision_model_name_or_path, args.text_model_name_or_path]
    ids = list(dict.fromkeys(i for i in map(hub_id_or_none, sources) if i))
    return ids or None


def card_start_details(args: argparse.Namespace) -> dict:
    """Where the weights started, for the card's training details (local paths by their name only)."""
    started = [
        (label, value)
        for label, value in (
            ("started from", args.model_name_or_path),
            ("vision encoder", args.vision_model_name_or_path),
            ("text encoder", args.text_model_name_or_path),
            ("BEiT-3 encoder", args.init_from_beit3),
        )
        if value
    ]
    return {label: hub_id_or_none(value) or f"local {Path(value).name}" for label, value in started}


# ---------------------------------------------------------------------------------------------- eval
@torch.no_grad()
def evaluate(model, dataloader, accelerator) -> dict:
    """GRES metrics (ReLA) at the model input resolution over the whole validation set.

    Each process counts ``[I, U, |P|, |G|]`` of its samples (``refseg.metrics.batch_mask_counts``) with the
    predicted and true no-target flags; the counts of all processes are gathered and scored by
    ``refseg.metrics.gres_metrics``.
    """
    model.eval()
    counts, flags, size = [], [], None
    for batch in tqdm(dataloader, desc="eval", disable=not accelerator.is_local_main_process, leave=False):
        labels = batch.pop("mask_labels")
        outputs = model(**batch)
        size = tuple(batch["pixel_values"].shape[-2:])
        logits = F.interpolate(outputs.semantic_mask_logits[:, None].float(), size=size, mode="bilinear")
        pred = (
            logits[:, 0].sigmoid() > 0.5
        )  # the raw merged mask (ReLA keeps it in the union for a wrong no-target)
        gt = torch.stack([lab.amax(dim=0) > 0.5 if len(lab) else pred.new_zeros(size) for lab in labels])
        sample_flags = torch.stack(
            [
                outputs.no_target_logits.float().sigmoid() > 0.5,
                torch.tensor([len(lab) == 0 for lab in labels], device=pred.device),
            ],
            dim=1,
        )
        counts.append(
            accelerator.gather_for_metrics(torch.from_numpy(batch_mask_counts(pred, gt)).to(pred.device))
        )
        flags.append(accelerator.gather_for_metrics(sample_flags))
    model.train()
    counts, flags = torch.cat(counts).cpu().numpy(), torch.cat(flags).cpu().numpy()
    records = dict(zip(("intersection", "union", "pred_area", "gt_area"), counts.T))
    records.update(pred_no_target=flags[:, 0], gt_no_target=flags[:, 1])
    metrics = gres_metrics(records, resolution=f"{size[0]}x{size[1]}")
    metrics["num_samples"] = int(len(counts))
    return metrics


# ---------------------------------------------------------------------------------------------- main
def recorded_command(argv: list[str] | None) -> str:
    """The command line for the model card; it never holds a credential (``--hub_token`` and ``hf_...`` values
    are redacted)."""
    return " ".join(
        shlex.quote(a) for a in redact_argv([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    )


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    """The ``Accelerator`` of the run, with the log levels, the seed and the output folder set up."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        # the scheduler is stepped once per optimizer step (train_loop), so its position is in optimizer steps at
        # any number of processes (Accelerate's default steps it num_processes times per optimizer step)
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    verbosity = "warning" if accelerator.is_local_main_process else "error"
    getattr(datasets.utils.logging, f"set_verbosity_{verbosity}")()
    getattr(transformers.utils.logging, f"set_verbosity_{verbosity}")()
    set_seed(args.seed, device_specific=True)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()
    return accelerator


def resume_checkpoint(args: argparse.Namespace, run_info: dict, accelerator) -> CheckpointInfo | None:
    """``--resume_from_checkpoint``, refused (another model type, another global batch) before any work."""
    if not args.resume_from_checkpoint:
        return None
    checkpoint = resolve_checkpoint_once(args.resume_from_checkpoint, args.output_dir, accelerator)
    for warning in check_resume(checkpoint, run_info, allow_inexact=args.allow_inexact_resume):
        logger.warning(warning, main_process_only=True)
    return checkpoint


class TrainingData:
    """The splits and their loaders; ``train_collate`` is told each epoch (the augmentation's seed).

    A plain class, not a dataclass: the tests load this script without registering it in ``sys.modules``, where
    a dataclass cannot resolve its postponed annotations.
    """

    def __init__(self, train, validation, train_loader: DataLoader, eval_loader: DataLoader, train_collate):
        self.train, self.validation = train, validation
        self.train_loader, self.eval_loader, self.train_collate = train_loader, eval_loader, train_collate


def build_dataloaders(args: argparse.Namespace, processor, accelerator) -> TrainingData:
    """The splits (loaded once, main process first) and their loaders, with the augmentation and the order."""
    with accelerator.main_process_first():
        train_ds, val_ds = load_splits(args, processor.image_processor.size["height"])
    check_dataset_size(len(train_ds), args.per_device_train_batch_size, accelerator.num_processes)
    # a private generator / seeded sampler: starting an epoch's iterator must not draw from the global RNG,
    # whose state (dropout, matching) is checkpointed, or a resumed run would diverge from an uninterrupted one
    order = (
        {"sampler": ImageGroupedSampler(list(train_ds["image_id"]), seed=args.seed)}
        if args.group_by_image
        else {"shuffle": True}
    )
    augment = None
    if args.tau_no > 0 or args.tau_multi > 0:  # synthetic no-target / multi-target samples (training only)
        augment = refseg.data.PresencePluralityAugmentation(
            tau_no=args.tau_no, tau_multi=args.tau_multi, seed=args.seed
        )
    train_collate = make_collate_fn(
        processor, args.max_text_length, share_images=args.group_by_image, augment=augment, seed=args.seed
    )
    train_loader = DataLoader(
        IndexedRows(train_ds) if augment is not None else train_ds,
        collate_fn=train_collate,
        batch_size=args.per_device_train_batch_size,
        num_workers=args.dataloader_num_workers,
        worker_init_fn=seed_worker,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),  # the loader's base seed is drawn from it too
        **order,
    )
    eval_loader = DataLoader(
        val_ds,
        collate_fn=make_collate_fn(processor, args.max_text_length),
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
    )
    return TrainingData(train_ds, val_ds, train_loader, eval_loader, train_collate)


def build_optimization(args: argparse.Namespace, model, train_loader: DataLoader, accelerator):
    """The recipe, its optimizer and its schedule; fills ``max_train_steps`` / ``num_train_epochs`` into ``args``.

    Steps are optimizer updates, computed from the per-process loader length. The schedule's ``step`` counts
    optimizer steps: the scheduler is stepped once per optimizer step on every process
    (``step_scheduler_with_optimizer=False``), so a checkpoint's schedule position does not depend on the number
    of processes that wrote it.
    """
    recipe = resolve_recipe(args, model.config)
    optimizer = build_optimizer(model, recipe)
    batches_per_process = math.ceil(len(train_loader) / accelerator.num_processes)
    steps_per_epoch = max(1, math.ceil(batches_per_process / args.gradient_accumulation_steps))
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * steps_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / steps_per_epoch)
    total = args.max_train_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: recipe.lr_factor(step, total, steps_per_epoch)
    )
    return recipe, optimizer, scheduler


def global_batch_size(args: argparse.Namespace, accelerator) -> int:
    """Samples per optimizer step over all processes and accumulation steps."""
    return args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps


def print_plan(
    args, accelerator, model, data: TrainingData, recipe, image_size: int, steps_per_epoch: int
) -> None:
    """The run at a glance: samples, batch arithmetic, steps, schedule and the resolved recipe."""
    accelerator.print(
        f"***** Training {type(accelerator.unwrap_model(model)).__name__} *****\n"
        f"  train samples = {len(data.train)}, validation samples = {len(data.validation)}, "
        f"image size = {image_size}\n"
        f"  batch: {args.per_device_train_batch_size} per device x {accelerator.num_processes} process(es) x "
        f"{args.gradient_accumulation_steps} accumulation step(s) = global batch "
        f"{global_batch_size(args, accelerator)} per optimizer step\n"
        f"  optimizer steps = {args.max_train_steps} ({steps_per_epoch} per epoch, {args.num_train_epochs} epoch(s)), "
        f"lr {args.learning_rate:g} -> {args.min_learning_rate:g} ({recipe.schedule})\n"
        f"  recipe {recipe.describe()}"
    )


def evaluate_and_log(args, accelerator, model, eval_loader, step: int, label: str) -> dict:
    """:func:`evaluate`, printed as ``label: ...`` and sent to the trackers as ``eval_*`` at ``step``."""
    metrics = evaluate(model, eval_loader, accelerator)
    accelerator.print(f"{label}: {format_metrics(metrics)}")
    if args.with_tracking:
        accelerator.log({f"eval_{k}": v for k, v in metrics.items() if _is_number(v)}, step=step)
    return metrics


def train_loop(
    args, accelerator, model, optimizer, scheduler, recipe, data: TrainingData, run_info, checkpoint
):
    """The optimizer steps (from the checkpoint's position when resuming): ``(completed_steps, metrics)``.

    Each step's micro-batches divide their losses by the step's global counts (``refseg.training.distributed``);
    checkpoints are written every ``--checkpointing_steps`` steps or epoch, evaluations every ``--eval_steps``.
    """
    steps_per_epoch = max(1, math.ceil(len(data.train_loader) / args.gradient_accumulation_steps))
    completed_steps, starting_epoch, resume_batches = 0, 0, 0
    if checkpoint is not None:
        # only a complete checkpoint (written atomically, with its marker) is resumed; its RNG states are required
        accelerator.print(f"Resuming from checkpoint {checkpoint.path}")
        load_checkpoint(accelerator, checkpoint, allow_inexact=args.allow_inexact_resume)
        completed_steps = checkpoint.completed_steps
        set_schedule_position(scheduler, completed_steps)
        starting_epoch = completed_steps // steps_per_epoch
        resume_batches = (completed_steps % steps_per_epoch) * args.gradient_accumulation_steps
    if completed_steps >= args.max_train_steps:
        starting_epoch = args.num_train_epochs  # the checkpoint is the end of training: no step is left
    progress = tqdm(
        range(args.max_train_steps), initial=completed_steps, disable=not accelerator.is_local_main_process
    )
    metrics: dict = {}
    running, running_n = 0.0, 0
    stop = False
    model.train()
    config, accumulation = accelerator.unwrap_model(model).config, args.gradient_accumulation_steps
    for epoch in range(starting_epoch, args.num_train_epochs):
        data.train_loader.set_epoch(epoch)
        data.train_collate.set_epoch(epoch)
        active = data.train_loader
        if epoch == starting_epoch and resume_batches:
            active = accelerator.skip_first_batches(data.train_loader, resume_batches)
        for batch, normalizer in loss_normalized_batches(active, config, accelerator, accumulation):
            with accelerator.accumulate(model), normalizer or nullcontext():
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and recipe.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients and not optimizer.step_was_skipped:
                    scheduler.step()  # once per optimizer step: the schedule counts optimizer steps
                optimizer.zero_grad()
            running += accelerator.reduce(
                loss.detach().float(), reduction="mean"
            ).item()  # mean over processes
            running_n += 1
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            progress.update(1)
            if completed_steps % args.logging_steps == 0 or completed_steps == args.max_train_steps:
                log = {"train_loss": running / running_n, "lr": scheduler.get_last_lr()[0], "epoch": epoch}
                progress.set_postfix(loss=f"{log['train_loss']:.4f}")
                if args.with_tracking:
                    accelerator.log(log, step=completed_steps)
                logger.info(f"step {completed_steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in log.items()))
                running, running_n = 0.0, 0
            if (
                str(args.checkpointing_steps).isdigit()
                and completed_steps % int(args.checkpointing_steps) == 0
            ):
                save_checkpoint(
                    accelerator,
                    args.output_dir,
                    checkpoint_name("step", completed_steps),
                    completed_steps=completed_steps,
                    epoch=epoch,
                    run=run_info,
                )
            if args.eval_steps and completed_steps % args.eval_steps == 0 and not args.skip_eval:
                metrics = evaluate_and_log(
                    args, accelerator, model, data.eval_loader, completed_steps, f"step {completed_steps}"
                )
            if completed_steps >= args.max_train_steps or completed_steps == args.stop_after_steps:
                stop = True
                break
        if args.checkpointing_steps == "epoch":
            save_checkpoint(
                accelerator,
                args.output_dir,
                checkpoint_name("epoch", epoch),
                completed_steps=completed_steps,
                epoch=epoch,
                run=run_info,
            )
        if stop:
            break
    progress.close()
    return completed_steps, metrics


def save_outputs(
    args, accelerator, model, processor, recipe, metrics: dict, completed_steps: int, **card
) -> None:
    """Weights and processor (``save_pretrained``), ``all_results.json``, ``training_args.json``, the model card
    and, with ``--push_to_hub``, the upload; ``card`` holds ``command`` and ``wall_time``."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(
        args.output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if not accelerator.is_main_process:
        return
    wall_time = card["wall_time"]
    processor.save_pretrained(args.output_dir)
    results = {**metrics, "completed_steps": completed_steps, "train_wall_time_s": round(wall_time, 1)}
    with open(os.path.join(args.output_dir, "all_results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.output_dir, "training_args.json"), "w") as f:
        json.dump({**redact_mapping(vars(args)), "recipe": recipe.to_dict()}, f, indent=2)
    write_model_card(
        args.output_dir,
        args.hub_model_id or Path(args.output_dir).name,
        model_type=unwrapped.config.model_type,
        results={k: v for k, v in metrics.items() if k in ("gIoU", "cIoU", "N-acc", "T-acc")},
        resolution=metrics.get("resolution"),
        **card_dataset_fields(args),
        base_model=card_base_models(args),
        training_command=card["command"],
        wall_time_s=wall_time,
        training_details={
            **card_start_details(args),
            "processes": accelerator.num_processes,
            "global batch": global_batch_size(args, accelerator),
            "optimizer steps": completed_steps,
            "learning rate": f"{args.learning_rate:g} -> {args.min_learning_rate:g} {recipe.schedule} "
            f"({'AdamW' if recipe.optimizer == 'adamw' else 'Adam'})",
            "recipe": recipe.describe(),
            "validation samples": metrics.get("num_samples", 0),
            "refseg": refseg.__version__,
        },
    )
    if args.push_to_hub:
        url = push_to_hub(
            args.output_dir, args.hub_model_id, token=args.hub_token, commit_message="End of training"
        )
        accelerator.print(f"pushed to {url}")


def main(argv: list[str] | None = None) -> dict:
    """Build, load the data, optimise, train (resuming if asked), evaluate and save; returns the final metrics."""
    args = parse_args(argv)
    start_time, command = time.time(), recorded_command(argv)
    accelerator = make_accelerator(args)

    model, processor = build_model_and_processor(args)
    model = apply_sync_batchnorm(model, args, accelerator)
    run_info = run_settings(args, model.config.model_type, accelerator.num_processes)
    checkpoint = resume_checkpoint(args, run_info, accelerator)
    data = build_dataloaders(args, processor, accelerator)
    recipe, optimizer, scheduler = build_optimization(args, model, data.train_loader, accelerator)
    model, optimizer, data.train_loader, data.eval_loader, scheduler = accelerator.prepare(
        model, optimizer, data.train_loader, data.eval_loader, scheduler
    )
    steps_per_epoch = max(1, math.ceil(len(data.train_loader) / args.gradient_accumulation_steps))
    print_plan(
        args, accelerator, model, data, recipe, processor.image_processor.size["height"], steps_per_epoch
    )
    if args.with_tracking:
        tracked = {k: v for k, v in redact_mapping(vars(args)).items() if v is not None}
        accelerator.init_trackers("refseg_train", tracked)

    completed_steps, metrics = train_loop(
        args, accelerator, model, optimizer, scheduler, recipe, data, run_info, checkpoint
    )
    if args.stop_after_steps is not None and completed_steps < args.max_train_steps:
        accelerator.print(f"stopped after {completed_steps} steps (--stop_after_steps)")
        accelerator.end_training()
        return {"completed_steps": completed_steps}
    if not args.skip_eval:
        metrics = evaluate_and_log(
            args, accelerator, model, data.eval_loader, completed_steps, "final evaluation"
        )
    save_outputs(
        args,
        accelerator,
        model,
        processor,
        recipe,
        metrics,
        completed_steps,
        command=command,
        wall_time=time.time() - start_time,
    )
    accelerator.end_training()
    return metrics


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.floating) and not isinstance(v, bool)


def format_metrics(metrics: dict) -> str:
    keys = ("gIoU", "cIoU", "N-acc", "T-acc")
    return (
        ", ".join(f"{k} {metrics[k]:.2f}" for k in keys if k in metrics)
        + f" ({metrics.get('resolution', '')})"
    )


def cli() -> None:
    """``python examples/train.py``: a checkpoint that cannot be resumed, or a full disk, in one line."""
    try:
        main()
    except CheckpointError as error:
        raise SystemExit(f"train.py: error: {error}") from None
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise SystemExit(f"train.py: error: {error.strerror}") from None


if __name__ == "__main__":
    cli()
