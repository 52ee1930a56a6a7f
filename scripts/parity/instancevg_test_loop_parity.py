"""``--mode test-loop``: the ORIGINAL InstanceVG test loop vs ``examples/evaluate.py`` on one generated gRefCOCO set.

A tiny gRefCOCO-format dataset is generated (JPEG images with drawn polygon objects; single-target,
multi-target and no-target refs, one or two sentences each, all in ``val``) and written twice from the same
objects: the official layout that refseg's builder reads (``grefcoco/grefs(unc).json``, ``instances.json``,
``images/train2014/COCO_train2014_%012d.jpg``) and the seqtr-type ``annotations/grefs/instances.json`` that
the original's ``GRefCOCO`` dataset reads (one item per sentence: ``image_id``, ``expressions.raw``,
``annotations`` with polygon ``segmentation`` and ``bbox``; no-target items carry ``bbox`` / ``segmentation``
None).

The reduced original gRefCOCO model (random weights, scores calibrated around 0.7 on these sentences, as
``--mode images``) is saved in the released format and converted with a small sentencepiece tokenizer. Then:

* original: ``instancevg_original_pipeline.run_original_test_loop`` (``tools/test.py``'s dataset, pipeline,
  dataloader, model and ``evaluate_model``), in a subprocess with transformers 4.44.2 (``--transformers-444``);
* refseg: ``examples/evaluate.py --resolution model --threshold 0.7 --benchmark gres`` on the dataset that
  ``refseg.data.build_grefcoco`` builds from the official-layout files, in a subprocess.

GRES gIoU / cIoU / T-acc / N-acc / Pr@0.7-0.9 and GREC F1 / N-acc / T-acc must agree to 1e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import torch

from refseg.models.instancevg.convert_instancevg import convert_checkpoint
from refseg.models.instancevg.processing_instancevg import clean_expression, tokenizer_from_sentencepiece

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grefcoco_tiny import IMAGE_SHAPES, image_name, make_dataset  # noqa: E402
from instancevg_images_parity import (  # noqa: E402
    REDUCED_BEIT3,
    REDUCED_OVERRIDES,
    _encode,
    _scores,
    train_spm,
)
from instancevg_original import (  # noqa: E402
    build_original_model,
    load_official_checkpoint,
    randomise_,
    save_official_checkpoint,
)
from instancevg_original_pipeline import CONFIGS, OriginalTestPipeline  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 128  # the reduced model's input size
THRESHOLD = 0.7


def _calibration_batches(checkout: str, data: dict, spm: Path) -> list[dict]:
    """The sentences' inputs as the original's test pipeline makes them (token ids from refseg's tokenizer,
    which equal the original loader's: ``--mode preprocessing``)."""
    pipeline = OriginalTestPipeline(checkout, CONFIGS[0], image_size=IMAGE_SIZE)
    tokenizer = tokenizer_from_sentencepiece(spm, model_max_length=pipeline.max_token)
    items = json.loads(Path(data["seqtr"]).read_text())["val"]
    batches = []
    for item in items:
        path = Path(data["images"]) / image_name(item["image_id"])
        img = torch.from_numpy(pipeline.load_and_transform(path)["img"]).permute(2, 0, 1)[None]
        encoded = tokenizer(
            clean_expression(item["expressions"]["raw"]),
            truncation=True,
            padding="max_length",
            max_length=pipeline.max_token,
        )
        padding = [1 - m for m in encoded["attention_mask"]]
        batches.append(
            {"img": img, "ids": torch.tensor([encoded["input_ids"]]), "padding": torch.tensor([padding])}
        )
    return batches


@torch.no_grad()
def calibrate_sample_scores(model: torch.nn.Module, batches: list[dict], share: float = 0.5) -> float:
    """Shift the object bias so that ``share`` of the sentences keep a query (a score above 0.7) and the others
    are predicted no-target (random weights keep a query everywhere or nowhere), as far as possible from any
    sentence's switching point; returns the smallest distance of a score to 0.7.

    A query's score is ``softmax(class logits)[0] * sigmoid(target logit)``; adding ``s`` to the object logit
    makes it ``sigmoid(d + s) * g`` with ``d`` = object logit minus the log-sum-exp of the others, so the query
    crosses 0.7 at ``s = logit(0.7 / g) - d`` and a sentence at the smallest ``s`` of its queries.
    """
    model.head.nt_embed.layers[-1].bias[0] += 6.0  # target probability near 1, as --mode images
    bias = model.head.class_embed[0].bias  # one module shared by every decoder layer
    batch = {key: torch.cat([b[key] for b in batches]) for key in ("img", "ids", "padding")}
    feat, text, cls = _encode(model, batch)
    pred, _ = model.head.forward_test(feat, cls, text, batch["padding"], batch["img"])
    logits = pred["pred_class"]
    d = logits[..., 0] - logits[..., 1:].logsumexp(-1)
    target = THRESHOLD / pred["nt_label"][:, :1].sigmoid()
    crossing = torch.where(target < 1, torch.logit(target.clamp(max=1 - 1e-7)) - d, torch.inf)
    switch = crossing.amin(-1).sort().values  # a sentence keeps a query once the shift passes its value
    kept = max(1, min(len(switch) - 1, round(share * len(switch))))
    bias[0] += float(switch[kept - 1] + switch[kept]) / 2
    scores = _scores(model, batch, (feat, text, cls))
    return float((scores - THRESHOLD).abs().min())


@torch.no_grad()
def predicted_boxes(model: torch.nn.Module, batches: list[dict], data: dict) -> dict[int, list[list[float]]]:
    """Per targeted ref, the boxes (image pixels, 2 px inside the image) of the queries that the first sentence of
    the ref keeps: used as that ref's ground truth, so that GREC's matching and F1 = 1 occur."""
    items = json.loads(Path(data["seqtr"]).read_text())["val"]
    out: dict[int, list[list[float]]] = {}
    for item, batch in zip(items, batches):
        if item["ref_id"] in out or item["annotations"][0]["bbox"] is None:
            continue
        encoded = _encode(model, batch)
        pred, _ = model.head.forward_test(encoded[0], encoded[2], encoded[1], batch["padding"], batch["img"])
        scores = _scores(model, batch, encoded)[0]
        cx, cy, w, h = pred["pred_bbox"][0].unbind(-1)
        sx, sy = item["width"], item["height"]  # normalised boxes -> image pixels
        boxes = torch.stack([(cx - w / 2) * sx, (cy - h / 2) * sy, (cx + w / 2) * sx, (cy + h / 2) * sy], -1)
        limits = torch.tensor([2.0, 2.0, sx - 3.0, sy - 3.0])
        boxes = torch.minimum(torch.maximum(boxes, limits[:2].repeat(2)), limits[2:].repeat(2))
        kept = boxes[(scores > THRESHOLD) & (boxes[:, 2] - boxes[:, 0] > 4) & (boxes[:, 3] - boxes[:, 1] > 4)]
        if len(kept):
            out[item["ref_id"]] = kept.tolist()
    return out


def original_test_loop(
    args: Namespace, data: dict, checkpoint: Path, spm: Path, work: Path
) -> dict[str, float]:
    """``run_original_test_loop`` in a subprocess with transformers 4.44.2 first on the path."""
    code = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import transformers
assert transformers.__version__.startswith("4."), transformers.__version__
from instancevg_original_pipeline import run_original_test_loop
request = json.load(sys.stdin)
out = run_original_test_loop(**request)
print("RESULT" + json.dumps(out))
"""
    (work / "pretrain_weights").mkdir(exist_ok=True)
    (work / "pretrain_weights" / "beit3.spm").write_bytes(spm.read_bytes())
    request = {
        "checkout": os.path.abspath(args.checkout),
        "annsfile": os.fspath(data["seqtr"]),
        "imgsfile": os.fspath(data["images"]),
        "checkpoint": os.fspath(checkpoint),
        "image_size": IMAGE_SIZE,
        "model_kwargs": {"overrides": REDUCED_OVERRIDES, "beit3_sizes": REDUCED_BEIT3, "head_width": 32},
    }
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.transformers_444))
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the original's test loop failed:\n{done.stderr[-4000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def refseg_evaluate(data: dict, converted: Path, work: Path) -> tuple[dict[str, float], list[str]]:
    """``refseg.data.build_grefcoco`` on the official-layout files, saved to disk, then ``examples/evaluate.py``."""
    from refseg.data import build_grefcoco

    dataset, _ = build_grefcoco(data["root"])
    dataset_dir = work / "grefcoco_hf"
    dataset.save_to_disk(os.fspath(dataset_dir))
    output = work / "refseg_metrics.json"
    command = [
        sys.executable,
        os.fspath(REPO / "examples" / "evaluate.py"),
        "--model",
        os.fspath(converted),
        "--dataset",
        os.fspath(dataset_dir),
        "--split",
        "val",
        "--benchmark",
        "gres",
        "--resolution",
        "model",
        "--threshold",
        str(THRESHOLD),
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--output",
        os.fspath(output),
    ]
    env = dict(os.environ, PYTHONPATH=os.fspath(REPO / "src"))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"examples/evaluate.py failed:\n{done.stderr[-4000:]}")
    result = json.loads(output.read_text())
    gres, grec = result["metrics"]["gres"], result["metrics"]["grec"]
    out = {"samples": result["num_samples"]}
    out.update({f"GREC {k}": grec[k] for k in ("Pr@(F1=1, IoU>=0.5)", "N-acc", "T-acc")})
    out.update(
        {f"GRES {k}": gres[k] for k in ("gIoU", "cIoU", "T-acc", "N-acc", "Pr@0.7", "Pr@0.8", "Pr@0.9")}
    )
    shown = ["python", "examples/evaluate.py", *command[2:]]
    return {k: float(v) for k, v in out.items()}, shown


def test_loop_parity(args: Namespace, folder: Path) -> bool:
    """Generate the data and the model, run both test loops, print the table; True when every metric agrees."""
    if not args.transformers_444:
        raise SystemExit(
            "--mode test-loop needs --transformers-444 (the original's loader tokenises with it)"
        )
    torch.manual_seed(0)
    data = make_dataset(folder / "data", seed=args.seed)
    spm = Path(args.spm) if args.spm else train_spm(folder / "small.spm")
    print(
        f"dataset: {len(IMAGE_SHAPES)} images, {data['refs']} refs, {data['sentences']} sentences", flush=True
    )

    original = build_original_model(
        args.checkout, CONFIGS[0], REDUCED_OVERRIDES, beit3_sizes=REDUCED_BEIT3, head_width=32
    )
    randomise_(original, seed=args.seed)
    with torch.no_grad():  # sharpen the T2I attention (no near-ties in the point selection), as --mode images
        attn = original.head.query_generation.T2I_decoder.layers[0].attentions[1].attn
        attn.in_proj_weight[: 2 * attn.embed_dim].mul_(8.0)
        attn.in_proj_bias[: 2 * attn.embed_dim].mul_(8.0)
    batches = _calibration_batches(args.checkout, data, spm)
    margin = calibrate_sample_scores(original, batches)
    print(f"scores calibrated: smallest |score - {THRESHOLD}| = {margin:.2e}", flush=True)
    boxes = predicted_boxes(original, batches, data)
    data = make_dataset(folder / "data_boxes", seed=args.seed, target_boxes=boxes)
    print(
        f"{len(boxes)} targeted refs take the boxes kept for their first sentence as ground truth", flush=True
    )
    checkpoint = folder / "official.pth"
    save_official_checkpoint(original.eval(), checkpoint, module_prefix=True)
    load_official_checkpoint(original, checkpoint)
    converted = folder / "converted"
    overrides = {
        "encoder_config": {
            "num_attention_heads": REDUCED_BEIT3["num_heads"],
            "num_hidden_layers": REDUCED_BEIT3["num_layers"],
        }
    }
    convert_checkpoint(checkpoint, converted, tokenizer=spm, config_overrides=overrides)
    print("reduced original model saved and converted", flush=True)

    work = folder / "work"
    work.mkdir()
    reference = original_test_loop(args, data, checkpoint, spm, work)
    ours, command = refseg_evaluate(data, converted, work)
    print("refseg: " + " ".join(command).replace(os.fspath(folder), "$TMP"))
    print(f"samples: original {reference.pop('samples'):.0f}, refseg {ours.pop('samples'):.0f}")
    print("| metric | original test loop | examples/evaluate.py | abs diff |")
    print("|---|---|---|---|")
    ok = True
    for key, value in reference.items():
        diff = abs(value - ours[key])
        ok &= diff <= 1e-6 * max(1.0, abs(value))
        print(f"| {key} | {value:.4f} | {ours[key]:.4f} | {diff:.1e} |")
    return ok
