"""Demo-model candidates side by side on one budget: same steps, batch, data and validation scenes.

Each candidate is trained from scratch by ``examples/train.py`` (its CLI, in a subprocess so that runs are
independent and can go in parallel) on the *train* stream of synthetic data seed ``--data_seed``, then
scored by ``examples/evaluate.py`` (``refseg.metrics``' GRES definitions, masks at the model's input size)
on the *validation* stream of data seed ``--eval_seed + 1``, which no run trained on. Nothing here
re-implements a metric, a loader or a data rule. One JSON file per candidate, then a markdown table:

    python benchmarks/demo_candidates.py --candidates instalign presence_plurality \
        --max_train_steps 800 --output_dir runs/demo_candidates
    python benchmarks/demo_candidates.py --table runs/demo_candidates   # JSON files -> markdown table
    python benchmarks/demo_candidates.py --overfit_steps 60 --logging_steps 10   # wiring check on one batch
    python benchmarks/demo_candidates.py --grounding runs/demo_candidates/metris   # does the mask follow the text?
    python benchmarks/demo_candidates.py --no_target_scores runs/demo_candidates/metris   # no-target ranking
    python benchmarks/demo_candidates.py --breakdown runs/demo_candidates/metris   # IoU per kind of sentence

Seconds per step are measured from train.py's step log lines (training steps only, not data generation
or saving) and depend on the machine's load, so the 1-minute load average is sampled during training and
reported with them. The candidates (docs/demo_model.md):

* ``instalign``: today's bundled design (DETR-style queries, late fusion), ``InstAlignConfig.preset("demo")``;
* ``presence_plurality``: ``PresencePluralityConfig.preset("demo")`` (language-aware Swin, PWAM fusion);
* ``metris``: ``MetrisConfig.preset("demo")`` with ``encoder_fusion="pwam"`` (early fusion in every stage);
* ``metris_nofusion``: the same with ``encoder_fusion="none"``, the no-early-fusion control.

The one-mask candidates add a Dice term to their cross-entropy (``lambda_dice``, beyond the papers); the
``presence_plurality_paper_loss`` and ``metris_paper_loss`` controls train the papers' loss alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EVAL_THRESHOLD = 0.5  # examples/evaluate.py's --threshold default: the diagnostics post-process as it scores
DICE = 1.0  # lambda_dice of the one-mask candidates (docs/demo_model.md); the *_paper_loss controls use 0

CANDIDATES: dict[str, dict] = {
    "instalign": {"model_type": "instalign", "overrides": None},
    "presence_plurality": {
        "model_type": "presence_plurality",
        "overrides": {"encoder_fusion": "pwam", "lambda_dice": DICE},
    },
    "metris": {"model_type": "metris", "overrides": {"encoder_fusion": "pwam", "lambda_dice": DICE}},
    "metris_nofusion": {"model_type": "metris", "overrides": {"encoder_fusion": "none", "lambda_dice": DICE}},
    # joint image-text encoder (BEiT-3): the sentence and the patches attend to each other in every layer
    "instancevg": {"model_type": "instancevg", "overrides": {"image_size": 160}},
    # controls: the paper's loss (2-class cross-entropy only), everything else the same
    "presence_plurality_paper_loss": {
        "model_type": "presence_plurality",
        "overrides": {"encoder_fusion": "pwam", "lambda_dice": 0.0},
    },
    "metris_paper_loss": {
        "model_type": "metris",
        "overrides": {"encoder_fusion": "pwam", "lambda_dice": 0.0},
    },
}

STEP_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - INFO - .*?\bstep (\d+): ")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES)[:4], choices=list(CANDIDATES))
    p.add_argument("--output_dir", default="runs/demo_candidates")
    p.add_argument("--config_preset", default="demo")
    p.add_argument("--max_train_steps", type=int, default=800)
    p.add_argument("--per_device_train_batch_size", type=int, default=8)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--min_learning_rate", type=float, default=1e-5)
    p.add_argument("--num_warmup_steps", type=int, default=100)
    p.add_argument(
        "--train_images", type=int, default=3000, help="synthetic training scenes (3 sentences each)"
    )
    p.add_argument("--data_seed", type=int, default=0, help="training scenes: train stream of this seed")
    p.add_argument("--eval_images", type=int, default=150, help="held-out validation scenes")
    p.add_argument(
        "--eval_seed",
        type=int,
        default=4,
        help="evaluate.py --seed: validation stream of data seed eval_seed + 1 (never trained on here)",
    )
    p.add_argument("--logging_steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads per run")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--config_overrides",
        default=None,
        help="JSON merged over each candidate's own overrides (a design lever measured on the same budget)",
    )
    p.add_argument(
        "--tag", default="", help="suffix of each run's folder and JSON name, e.g. '_nt1' for a lever's runs"
    )
    p.add_argument("--tau_no", type=float, default=None, help="train.py --tau_no (extra no-target sentences)")
    p.add_argument(
        "--group_by_image",
        action="store_true",
        help="train.py --group_by_image: each batch holds the sentences of a few whole images (a data layout)",
    )
    p.add_argument(
        "--table", default=None, help="only print the markdown table of the JSON files in this folder"
    )
    p.add_argument(
        "--grounding",
        nargs="+",
        default=None,
        help="only measure whether these trained models' masks depend on the sentence (see sentence_dependence)",
    )
    p.add_argument(
        "--no_target_scores",
        nargs="+",
        default=None,
        help="only measure how these trained models' no-target probabilities separate the sentences "
        "(see no_target_separation)",
    )
    p.add_argument(
        "--breakdown",
        nargs="+",
        default=None,
        help="only measure these trained models' masks per kind of sentence (see sentence_breakdown)",
    )
    p.add_argument(
        "--overfit_steps",
        type=int,
        default=0,
        help="instead of the side-by-side: train each candidate this many steps on ONE fixed batch of the "
        "first training sentences and report its masks every --logging_steps (a wiring check)",
    )
    return p.parse_args(argv)


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float = 15.0):
        super().__init__(daemon=True)
        self.every, self.samples, self._done = every, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._done.set()
        self.join()
        s = self.samples
        return {
            "mean": round(sum(s) / len(s), 2),
            "min": round(min(s), 2),
            "max": round(max(s), 2),
            "n": len(s),
        }


def seconds_per_step(log_text: str) -> dict:
    """Mean seconds per optimizer step between the first and the last ``step N:`` log lines of train.py."""
    points = []
    for line in log_text.splitlines():
        m = STEP_LINE.search(line)  # tqdm may share the line
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            points.append((int(m.group(2)), t))
    if len(points) < 2:
        return {"seconds_per_step": None, "measured_steps": 0}
    (s0, t0), (s1, t1) = points[0], points[-1]
    return {"seconds_per_step": round((t1 - t0) / (s1 - s0), 4), "measured_steps": s1 - s0}


def parameter_count(model_dir: Path) -> int:
    """Parameters of the saved model (all of them, trainable or not)."""
    from transformers import AutoModel

    import refseg  # noqa: F401  (registers the Auto classes)

    model = AutoModel.from_pretrained(str(model_dir))
    return sum(p.numel() for p in model.parameters())


def scene_size(model_dir: Path) -> int:
    """Validation scenes are drawn at the trained model's input size (the scenes scale with it)."""
    return int(json.loads((Path(model_dir) / "config.json").read_text()).get("image_size", 160))


def candidate_overrides(name: str, args: argparse.Namespace) -> dict | None:
    """The candidate's own config overrides with ``--config_overrides`` merged over them."""
    overrides = dict(CANDIDATES[name]["overrides"] or {})
    if args.config_overrides:
        overrides.update(json.loads(args.config_overrides))
    return overrides or None


def run_candidate(name: str, args: argparse.Namespace) -> dict:
    spec = CANDIDATES[name]
    overrides = candidate_overrides(name, args)
    out = Path(args.output_dir) / f"{name}{args.tag}"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    train_cmd = [
        sys.executable, str(ROOT / "examples/train.py"),
        "--model_type", spec["model_type"], "--config_preset", args.config_preset,
        "--train_images", str(args.train_images), "--val_images", "1", "--data_seed", str(args.data_seed),
        "--per_device_train_batch_size", str(args.per_device_train_batch_size),
        "--learning_rate", str(args.learning_rate), "--min_learning_rate", str(args.min_learning_rate),
        "--num_warmup_steps", str(args.num_warmup_steps), "--max_train_steps", str(args.max_train_steps),
        "--logging_steps", str(args.logging_steps), "--seed", str(args.seed), "--skip_eval",
        "--output_dir", str(out),
    ]  # fmt: skip
    if overrides:
        train_cmd += ["--config_overrides", json.dumps(overrides)]
    if args.tau_no is not None:
        train_cmd += ["--tau_no", str(args.tau_no)]
    if args.group_by_image:
        train_cmd.append("--group_by_image")
    record: dict = {
        "candidate": f"{name}{args.tag}",
        "model_type": spec["model_type"],
        "config_overrides": overrides,
    }
    sampler = LoadSampler()
    sampler.start()
    start = time.time()
    with open(out / "train.log", "w") as log:
        rc = subprocess.run(train_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    record["train_wall_s"] = round(time.time() - start, 1)
    record["load_average_1min_during_training"] = sampler.stop()
    log_text = (out / "train.log").read_text()
    record["train_command"] = " ".join(train_cmd[1:])
    record["train_returncode"] = rc
    if rc != 0:
        record["error"] = log_text[-3000:]
        return record
    record.update(seconds_per_step(log_text))
    record["max_train_steps"] = args.max_train_steps
    record["batch_size"] = args.per_device_train_batch_size
    record["threads"] = args.threads
    record["parameters"] = parameter_count(out)
    metrics_file = out / "eval.json"
    eval_cmd = [
        sys.executable, str(ROOT / "examples/evaluate.py"), "--model", str(out), "--dataset", "synthetic",
        "--split", "validation", "--synthetic-images", str(args.eval_images), "--synthetic-size", str(scene_size(out)),
        "--seed", str(args.eval_seed), "--resolution", "model", "--device", "cpu", "--output", str(metrics_file),
    ]  # fmt: skip
    start = time.time()
    with open(out / "eval.log", "w") as log:
        rc = subprocess.run(eval_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    record["eval_wall_s"] = round(time.time() - start, 1)
    record["eval_command"] = " ".join(eval_cmd[1:])
    record["eval_returncode"] = rc
    if rc != 0:
        record["error"] = (out / "eval.log").read_text()[-3000:]
        return record
    result = json.loads(metrics_file.read_text())
    gres = result["metrics"]["gres"]
    record["eval"] = {
        "scenes": args.eval_images,
        "samples": result["num_samples"],
        "resolution": result["resolution"],
        "data_seed": args.eval_seed + 1,
        "split": "validation",
    }
    record["gres"] = gres
    return record


def overfit_candidate(name: str, args: argparse.Namespace) -> dict:
    """Train one candidate on one fixed batch (in this process) and record, every ``--logging_steps``, the loss
    terms, the share of pixels predicted foreground, each sample's IoU with its target and whether the
    no-target verdict is right. A model whose targets, logits or heads were misaligned could not fit it."""
    import torch

    sys.path.insert(0, str(ROOT / "examples"))
    import train  # examples/train.py: the same model, processor, data and collate as the side-by-side

    spec = CANDIDATES[name]
    torch.manual_seed(args.seed)
    train_args = train.parse_args(
        ["--model_type", spec["model_type"], "--config_preset", args.config_preset,
         "--config_overrides", json.dumps(candidate_overrides(name, args) or {}), "--train_images", "8", "--val_images", "1",
         "--data_seed", str(args.data_seed), "--output_dir", str(Path(args.output_dir) / "overfit")]
    )  # fmt: skip
    model, processor = train.build_model_and_processor(train_args)
    rows, _ = train.load_splits(train_args, model.config.image_size)
    rows = [rows[i] for i in range(min(args.per_device_train_batch_size, len(rows)))]
    batch = train.make_collate_fn(processor, train_args.max_text_length)(rows)
    size = tuple(batch["pixel_values"].shape[-2:])
    target = torch.stack([m.amax(0) if len(m) else torch.zeros(size) for m in batch["mask_labels"]]) > 0.5
    empty = [not bool(t.any()) for t in target]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    record: dict = {"candidate": name, "config_overrides": candidate_overrides(name, args), "steps": []}
    record["target_foreground_share"] = [round(float(t.float().mean()), 4) for t in target]
    model.train()
    for step in range(1, args.overfit_steps + 1):
        out = model(**batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % args.logging_steps and step != args.overfit_steps:
            continue
        with torch.no_grad():
            logits = out.semantic_mask_logits[:, None]
            fg = (
                torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0]
                > 0
            )
            inter, union = (fg & target).sum((1, 2)), (fg | target).sum((1, 2))
            iou = [round(float(i / u), 3) for i, u, e in zip(inter, union, empty) if not e]
            verdict = [bool(v > 0) == e for v, e in zip(out.no_target_logits, empty)]
        record["steps"].append(
            {
                "step": step,
                "loss": {k: round(v.item(), 4) for k, v in out.loss_dict.items()},
                "predicted_foreground_share": round(float(fg.float().mean()), 4),
                "max_foreground_logit": round(float(logits.max()), 3),
                "iou_of_targeted_samples": iou,
                "no_target_verdicts_right": sum(verdict),
            }
        )
        print(name, json.dumps(record["steps"][-1]), flush=True)
    return record


def load_for_inference(model_dir: str):
    """A trained candidate's processor and model (eval mode, gradients off) for the diagnostics below."""
    import torch
    from transformers import AutoModel, AutoProcessor

    import refseg  # noqa: F401  (registers the Auto classes)

    torch.set_grad_enabled(False)
    return AutoProcessor.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()


def sentence_dependence(model_dir: str, args: argparse.Namespace, scenes: int = 60) -> dict:
    """Does the mask follow the sentence? On the first ``scenes`` validation scenes of the side-by-side, for
    every ordered pair (i, j) of targeted sentences of one image whose targets overlap at IoU <= 0.5, the IoU
    of sentence i's predicted mask (before the no-target decision) with its own target and with sentence j's.
    A model that segments the same objects whatever the sentence scores about the same on both."""
    import itertools

    import numpy as np

    from refseg.data import synthetic_scenes
    from refseg.data.masks import merge_instances

    processor, model = load_for_inference(model_dir)
    by_image: dict = {}
    for row in synthetic_scenes(
        scenes, seed=args.eval_seed + 1, image_size=model.config.image_size, split="validation"
    ):
        if not row["no_target"] and row["instances"]:
            by_image.setdefault(row["image_id"], []).append(row)
    own, other = [], []

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / max(1, (a | b).sum()))

    for rows in by_image.values():
        if len(rows) < 2:
            continue
        image = rows[0]["image"].convert("RGB")
        inputs = processor(images=[image] * len(rows), text=[r["sentence"] for r in rows])
        preds = processor.post_process_referring_segmentation(
            model(**inputs), target_sizes=[(image.height, image.width)] * len(rows), threshold=EVAL_THRESHOLD
        )
        masks = [np.asarray(p["semantic_mask"], dtype=bool) for p in preds]
        targets = [merge_instances(r["instances"], image.height, image.width) for r in rows]
        for i, j in itertools.permutations(range(len(rows)), 2):
            if iou(targets[i], targets[j]) <= 0.5:
                own.append(iou(masks[i], targets[i]))
                other.append(iou(masks[i], targets[j]))
    own_a, other_a = np.array(own), np.array(other)
    return {
        "model": model_dir,
        "pairs": len(own),
        "iou_with_own_target": round(float(own_a.mean()), 3),
        "iou_with_other_sentences_target": round(float(other_a.mean()), 3),
        "share_own_above_other": round(float((own_a > other_a).mean()), 3),
    }


TABLE_KEYS = ("gIoU", "cIoU", "N-acc", "T-acc")


def markdown_table(records: list[dict]) -> str:
    rows = [
        "| candidate | parameters | " + " | ".join(TABLE_KEYS) + " | s/step | load avg (mean) |",
        "|---|---|" + "---|" * len(TABLE_KEYS) + "---|---|",
    ]
    for r in records:
        if "gres" not in r:
            rows.append(
                f"| {r['candidate']} | failed: see its JSON | " + " | " * (len(TABLE_KEYS) + 1) + " |"
            )
            continue
        vals = " | ".join(f"{r['gres'][k]:.1f}" for k in TABLE_KEYS)
        rows.append(
            f"| {r['candidate']} | {r['parameters'] / 1e6:.2f} M | {vals} | {r['seconds_per_step']:.2f} | "
            f"{r['load_average_1min_during_training']['mean']:.1f} |"
        )
    return "\n".join(rows)


def sentence_form(sentence: str) -> str:
    """The grammar form of a synthetic sentence, read from the grammar's own phrase tables: "relation",
    "superlative", "location", "conjunction", "all" (all / everything / counts) or "plain" (attributes only)."""
    from refseg.data.synthetic.grammar import LOCATIONS, NUMBERS, RELATIONS, SUPERLATIVES

    words = sentence.split()
    if any(f" {phrase} the " in f" {sentence} " for phrase in RELATIONS.values()):
        return "relation"
    if any(word in SUPERLATIVES for word in words):
        return "superlative"
    if any(sentence.endswith(phrase) for phrase in LOCATIONS.values()):
        return "location"
    if " and " in sentence:
        return "conjunction"
    if words[0] in ("all", "everything") or any(word in NUMBERS.values() for word in words):
        return "all"
    return "plain"


def sentence_breakdown(model_dir: str, args: argparse.Namespace, scenes: int = 60) -> dict:
    """Where do a model's masks fail? On the first ``scenes`` validation scenes, per grammar form of the targeted
    sentences: the mean IoU of the mask before the no-target decision, the share with IoU above 0.3 (the mask
    is on the referred objects at all) and the predicted / target area ratio (above 1: the mask also covers
    objects the sentence excludes); and, for no-target sentences, the share whose mask is empty."""
    import numpy as np

    from refseg.data import synthetic_scenes
    from refseg.data.masks import merge_instances

    processor, model = load_for_inference(model_dir)
    size = model.config.image_size
    forms: dict[str, list[tuple[float, float, float]]] = {}
    empty_on_no_target = []
    for row in synthetic_scenes(scenes, seed=args.eval_seed + 1, image_size=size, split="validation"):
        image = row["image"].convert("RGB")
        (pred,) = processor.post_process_referring_segmentation(
            model(**processor(images=[image], text=[row["sentence"]])),
            target_sizes=[(size, size)],
            threshold=EVAL_THRESHOLD,
        )
        mask = np.asarray(pred["semantic_mask"], dtype=bool)
        if row["no_target"]:
            empty_on_no_target.append(not mask.any())
            continue
        target = merge_instances(row["instances"], size, size)
        iou = float((mask & target).sum() / max((mask | target).sum(), 1))
        forms.setdefault(sentence_form(row["sentence"]), []).append((iou, mask.sum(), target.sum()))
    return {
        "model": model_dir,
        "forms": {
            form: {
                "sentences": len(rows),
                "mean_iou": round(float(np.mean([r[0] for r in rows])), 3),
                "share_iou_above_0.3": round(float(np.mean([r[0] > 0.3 for r in rows])), 3),
                "predicted_over_target_area": round(
                    float(sum(r[1] for r in rows) / sum(r[2] for r in rows)), 2
                ),
            }
            for form, rows in sorted(forms.items())
        },
        "no_target_sentences": len(empty_on_no_target),
        "no_target_share_with_empty_mask": round(float(np.mean(empty_on_no_target)), 3)
        if empty_on_no_target
        else None,
    }


def no_target_separation(model_dir: str, args: argparse.Namespace, scenes: int = 60) -> dict:
    """Does the no-target decision rank the sentences right, whatever its threshold? On the first ``scenes``
    validation scenes of the side-by-side, the post-processed ``1 - target_score`` (the model's probability
    that nothing is referred to) of every sentence: its range for no-target and for targeted sentences, the
    AUROC (the chance that a no-target sentence scores above a targeted one; 0.5 = no signal) and N-acc / T-acc
    at a few thresholds. N-acc 0 with an AUROC well above 0.5 means a calibrated threshold, not a new model,
    would already say "no target"."""
    import numpy as np

    from refseg.data import synthetic_scenes

    processor, model = load_for_inference(model_dir)
    scores: dict[bool, list[float]] = {True: [], False: []}
    for row in synthetic_scenes(
        scenes, seed=args.eval_seed + 1, image_size=model.config.image_size, split="validation"
    ):
        image = row["image"].convert("RGB")
        inputs = processor(images=[image], text=[row["sentence"]])
        (pred,) = processor.post_process_referring_segmentation(
            model(**inputs), target_sizes=[(image.height, image.width)]
        )
        scores[bool(row["no_target"])].append(1.0 - float(pred["target_score"]))
    absent, present = np.array(scores[True]), np.array(scores[False])
    if not len(absent) or not len(present):
        return {"model": model_dir, "error": "the scenes hold no no-target or no targeted sentence"}
    greater = (absent[:, None] > present[None, :]).mean() + 0.5 * (absent[:, None] == present[None, :]).mean()
    thresholds = {
        f"{t:g}": {
            "N-acc": round(100 * float((absent > t).mean()), 1),
            "T-acc": round(100 * float((present <= t).mean()), 1),
        }
        for t in (0.25, 0.3, 0.35, 0.4, 0.5)
    }
    return {
        "model": model_dir,
        "no_target_sentences": len(absent),
        "targeted_sentences": len(present),
        "p_no_target_of_no_target_sentences": [
            round(float(f(absent)), 3) for f in (np.min, np.median, np.max)
        ],
        "p_no_target_of_targeted_sentences": [
            round(float(f(present)), 3) for f in (np.min, np.median, np.max)
        ],
        "auroc": round(float(greater), 3),
        "at_threshold": thresholds,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        records = [json.loads(f.read_text()) for f in sorted(Path(args.table).glob("*.json"))]
        print(markdown_table(records))
        return 0
    if args.grounding:
        for model_dir in args.grounding:
            print(json.dumps(sentence_dependence(model_dir, args)), flush=True)
        return 0
    if args.breakdown:
        for model_dir in args.breakdown:
            print(json.dumps(sentence_breakdown(model_dir, args)), flush=True)
        return 0
    if args.no_target_scores:
        for model_dir in args.no_target_scores:
            print(json.dumps(no_target_separation(model_dir, args)), flush=True)
        return 0
    if args.overfit_steps:
        folder = Path(args.output_dir) / "overfit"
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.candidates:
            record = overfit_candidate(name, args)
            (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        return 0
    for name in args.candidates:
        record = run_candidate(name, args)
        path = Path(args.output_dir) / f"{name}{args.tag}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
