"""The ORIGINAL InstanceVG test-time path for one image file, on CPU: its data pipeline and its inference.

Our harness (see ``instancevg_original.py`` for the environment); nothing of the original is copied. Every step
calls the original's own code from the checkout the user gives:

* decoding: the config's loader (``LoadImageAnnotationsFromFileGRES`` / ``LoadImageAnnotationsFromFile_TO``)
  ``_load_img``, i.e. ``mmcv.imfrombytes(flag="color")`` (OpenCV, BGR);
* ``Resize`` and ``Normalize`` built from the config's ``val_pipeline``; ``DefaultFormatBundle``, ``CollectData``
  and mmcv's ``collate`` as ``tools/demo.py`` chains them;
* tokenisation: the loader's ``_load_expression_tokenize_beit3`` with ``XLMRobertaTokenizer("pretrain_weights/
  beit3.spm")`` of transformers 4.44.2, the version the original pins, run in a subprocess (transformers 5 cannot
  build that tokenizer) whose ``PYTHONPATH`` puts such an install first, e.g.
  ``pip install --target transformers-4.44 --no-deps transformers==4.44.2 tokenizers==0.19.1 huggingface_hub==0.24.6``;
* inference and post-processing: ``model(..., return_loss=False, rescale=True, with_bbox=True, with_mask=True)``
  as ``tools/demo.py`` calls it (merged mask and boxes in original image coordinates).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instancevg_original import (  # noqa: E402
    build_original_model,
    import_original,
    load_official_checkpoint,
)

CONFIGS = (
    "configs/gres/InstanceVG-grefcoco.py",
    "configs/refzom/InstanceVG-refzom.py",
    "configs/rrefcoco/InstanceVG-rrefcoco.py",
    "configs/refcoco/InstanceVG-B-refcoco/InstanceVG-B-refcoco.py",
    "configs/refcoco/InstanceVG-L-refcoco/InstanceVG-L-refcoco.py",
)
DEMO_META_KEYS = ["filename", "expression", "ori_shape", "img_shape", "pad_shape", "scale_factor", "empty"]
_IMAGE_NAME = "COCO_train2014_%012d.jpg"  # the loaders' file naming (GRefCOCO, RefCOCO); others use file_name


class OriginalTestPipeline:
    """The test-time transforms of one released config, built by the original's registry.

    ``image_size`` replaces the config's ``Resize`` scale (the reduced parity model uses 128).
    """

    def __init__(self, checkout: str | os.PathLike, config_name: str, image_size: int | None = None):
        import_original(checkout)
        from instancevg.datasets.builder import PIPELINES
        from mmcv import Config
        from mmcv.utils import build_from_cfg

        self.checkout, self.config_name = os.fspath(checkout), config_name
        cfg = Config.fromfile(os.path.join(self.checkout, config_name))
        steps = [dict(step) for step in cfg.val_pipeline]
        if [s["type"] for s in steps[1:3]] != ["Resize", "Normalize"]:
            raise ValueError(f"{config_name}: unexpected test pipeline {[s['type'] for s in steps]}")
        self.loader_cfg = dict(steps[0])
        self.max_token = int(self.loader_cfg["max_token"])
        if image_size is not None:
            steps[1]["img_scale"] = (image_size, image_size)
        # the tokenizer needs transformers 4.44 (see original_tokenize): the image loader is built without it
        self.loader = build_from_cfg({**self.loader_cfg, "use_token_type": "default"}, PIPELINES)
        self.resize = build_from_cfg(steps[1], PIPELINES)
        self.normalize = build_from_cfg(steps[2], PIPELINES)
        self.format = build_from_cfg(dict(type="DefaultFormatBundle"), PIPELINES)
        self.collect = build_from_cfg(
            dict(
                type="CollectData",
                keys=["img", "ref_expr_inds", "text_attention_mask"],
                meta_keys=DEMO_META_KEYS,
            ),
            PIPELINES,
        )

    def load_and_transform(self, image_path: str | os.PathLike) -> dict[str, Any]:
        """Decode, resize and normalise one file: the results dict (``img`` (h, w, 3) float32 RGB, metas)."""
        with tempfile.TemporaryDirectory() as folder:
            name = _IMAGE_NAME % 1
            shutil.copyfile(image_path, os.path.join(folder, name))
            results = {"ann": {"image_id": 1, "file_name": name}, "imgsfile": folder}
            results = self.loader._load_img(results)
        results["filename"] = os.fspath(image_path)
        results.update(with_bbox=False, with_mask=False, empty=None)
        return self.normalize(self.resize(results))


def original_tokenize(
    checkout: str | os.PathLike,
    loader_cfg: dict,
    spm_path: str | os.PathLike,
    sentences: list[str],
    transformers_path: str | os.PathLike,
    python: str = sys.executable,
) -> list[tuple[list[int], list[int]]]:
    """``(ref_expr_inds, text_attention_mask)`` per sentence from the loader's ``_load_expression_tokenize_beit3``
    with transformers 4.44's ``XLMRobertaTokenizer`` (subprocess; ``transformers_path`` holds that install)."""
    code = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from instancevg_original import import_original
import_original(sys.argv[2])
from mmcv.utils import build_from_cfg
from instancevg.datasets.builder import PIPELINES
import transformers
assert transformers.__version__.startswith("4."), transformers.__version__
request = json.load(sys.stdin)
loader = build_from_cfg(request["loader"], PIPELINES)  # XLMRobertaTokenizer("pretrain_weights/beit3.spm")
out = []
for sentence in request["sentences"]:
    gres = "GRES" in request["loader"]["type"]
    ann = {"expressions": {"raw": sentence} if gres else [sentence]}
    r = loader._load_expression_tokenize_beit3({"ann": ann})
    out.append([r["ref_expr_inds"].tolist(), r["text_attention_mask"].tolist()])
print("RESULT" + json.dumps(out))
"""
    with tempfile.TemporaryDirectory() as folder:
        os.makedirs(os.path.join(folder, "pretrain_weights"))
        shutil.copyfile(spm_path, os.path.join(folder, "pretrain_weights", "beit3.spm"))
        env = dict(os.environ, PYTHONPATH=os.fspath(transformers_path))
        request = {"loader": {**loader_cfg, "use_token_type": "beit3"}, "sentences": sentences}
        done = subprocess.run(
            [python, "-c", code, str(Path(__file__).resolve().parent), os.path.abspath(checkout)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            cwd=folder,
            env=env,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the original's tokenisation failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return [tuple(pair) for pair in json.loads(line[len("RESULT") :])]


@torch.no_grad()
def original_predict_file(
    model: torch.nn.Module,
    pipeline: OriginalTestPipeline,
    image_path: str | os.PathLike,
    ref_expr_inds: list[int],
    text_attention_mask: list[int],
) -> dict[str, Any]:
    """``tools/demo.py``'s inference on one file with given token ids: scores (every query, weighted), boxes
    (x0, y0, x1, y1 in original pixels) and the merged binary mask at the original size."""
    import pycocotools.mask as mask_utils
    from mmcv.parallel import collate

    results = pipeline.load_and_transform(image_path)
    results["expression"] = ""
    results["ref_expr_inds"] = np.array(ref_expr_inds, dtype=int)
    results["text_attention_mask"] = np.array(text_attention_mask, dtype=int)
    data = collate([pipeline.collect(pipeline.format(results))], samples_per_gpu=1)
    # the original's extract_data on CPU (it moves tensors to CUDA)
    inputs = {key: value.data[0] for key, value in data.items()}
    predictions = model(**inputs, return_loss=False, rescale=True, with_bbox=True, with_mask=True)
    boxes = predictions["pred_bboxes"][0]
    mask = mask_utils.decode(predictions["pred_masks"][0]["pred_masks"]).astype(bool)
    return {
        "pixel_values": inputs["img"][0],
        "scores": boxes["scores"].float(),
        "boxes": boxes["boxes"].float(),
        "merged_mask": torch.from_numpy(mask),
    }


def run_original_test_loop(
    checkout: str | os.PathLike,
    annsfile: str | os.PathLike,
    imgsfile: str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    config_name: str = CONFIGS[0],
    which_set: str = "val",
    image_size: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    samples_per_gpu: int = 4,
) -> dict[str, float]:
    """``tools/test.py`` of the original on CPU for one gRefCOCO split: its dataset class (``GRefCOCO`` on a
    seqtr-type ``annsfile``), the config's ``val_pipeline`` (decode, tokenise with ``pretrain_weights/beit3.spm``
    relative to the working directory, ``Resize`` to ``image_size``, ``Normalize``, formatting), its
    ``build_dataloader`` and mmcv ``collate``, the model loaded from an official-format ``checkpoint``, and
    ``instancevg.apis.test.evaluate_model`` (post-processing with the config's ``post_params``, then
    ``grec_evaluate_f1_nacc`` and ``gres_evaluate``). Needs transformers 4.x (the loader's
    ``XLMRobertaTokenizer``). ``model_kwargs`` go to ``build_original_model`` (reduced sizes).

    Two CPU substitutions, nothing else: ``extract_data`` keeps tensors on the CPU (the original moves them to
    CUDA), and the dataset's GloVe vocabulary (``datasets.utils.tokenize``, read from pickles next to the
    annotations and unused with BEiT-3 tokens) is an empty one. ``evaluate_model`` returns GREC's N-acc / T-acc
    and drops those of ``gres_evaluate``; a wrapper records them.
    """
    import_original(checkout)
    from instancevg.datasets import build_dataloader, build_dataset
    from mmcv import Config

    base = importlib.import_module("instancevg.datasets.base")
    base.tokenize = lambda annsfile, anns_all, word_emb_cfg=None: (
        {"PAD": 0, "UNK": 1, "CLS": 2},
        {0: "PAD", 1: "UNK", 2: "CLS"},
        np.zeros((0,)),
    )
    test_module = importlib.import_module("instancevg.apis.test")
    test_module.extract_data = lambda inputs: {key: value.data[0] for key, value in inputs.items()}
    gres_evaluate, gres_results = test_module.gres_evaluate, []

    def recording_gres_evaluate(*args, **kwargs):  # evaluate_model drops its T-acc / N-acc: keep them
        gres_results.append(gres_evaluate(*args, **kwargs))
        return gres_results[-1]

    test_module.gres_evaluate = recording_gres_evaluate

    cfg = Config.fromfile(os.path.join(os.fspath(checkout), config_name))
    if cfg.dataset != "GRefCOCO":
        raise ValueError(f"{config_name}: only the gRefCOCO test loop is run here, not {cfg.dataset}")
    pipeline = [dict(step) for step in cfg.val_pipeline]
    if image_size is not None:
        pipeline[1]["img_scale"] = (image_size, image_size)
    cfg.data.val.update(
        annsfile=os.fspath(annsfile),
        imgsfile=os.fspath(imgsfile),
        which_set=which_set,
        pipeline=pipeline,
        word_emb_cfg=None,
    )
    cfg.data.samples_per_gpu, cfg.data.workers_per_gpu = samples_per_gpu, 0
    cfg.distributed, cfg.rank, cfg.world_size, cfg.seed = False, 0, 1, None
    dataset = build_dataset(cfg.data.val)
    loader = build_dataloader(cfg, dataset)
    model = build_original_model(checkout, config_name, **(model_kwargs or {}))
    load_official_checkpoint(model, checkpoint)
    f1, n_acc, t_acc, giou, ciou, pr = test_module.evaluate_model(which_set, cfg, model, loader)
    return {
        "samples": len(dataset),
        "GREC Pr@(F1=1, IoU>=0.5)": float(f1),
        "GREC N-acc": float(n_acc),
        "GREC T-acc": float(t_acc),
        "GRES gIoU": float(giou),
        "GRES cIoU": float(ciou),
        "GRES T-acc": float(gres_results[-1][2]),
        "GRES N-acc": float(gres_results[-1][3]),
        **{f"GRES Pr@{t}": float(v) for t, v in zip((0.7, 0.8, 0.9), pr)},
    }
