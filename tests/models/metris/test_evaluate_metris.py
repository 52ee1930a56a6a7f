"""examples/evaluate.py with a tiny METRIS: GRES (gRefCOCO-style) and RES (RefCOCO-style) fixtures."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer

from refseg.data import prepare_dataset
from refseg.models.metris import (
    MetrisConfig,
    MetrisForReferringSegmentation,
    MetrisImageProcessor,
    MetrisProcessor,
)
from tests.data import refer_fixtures as rf

ROOT = Path(__file__).resolve().parents[3]


def _script():
    spec = importlib.util.spec_from_file_location("evaluate_example", ROOT / "examples" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def restore_grad_mode():
    """evaluate.py turns autograd off for the whole process; later tests need it back."""
    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_metris")
    words = (
        "the two people both persons zebra left person and crowd dog tiny green umbrella on lady right woman"
    )
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words.split()]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})
    torch.manual_seed(0)
    MetrisForReferringSegmentation(
        MetrisConfig.preset("tiny", text_config={"vocab_size": 32})
    ).save_pretrained(path)
    MetrisProcessor(MetrisImageProcessor(size=64), tokenizer).save_pretrained(path)
    return path


def test_gres_on_grefcoco_style_data(tmp_path, model_dir):
    data = tmp_path / "grefcoco"
    prepare_dataset("grefcoco", rf.make_grefcoco(tmp_path / "src"), data, progress=False)
    out = tmp_path / "m.json"
    assert _script().main(["--model", str(model_dir), "--dataset", str(data), "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["benchmark"], result["num_samples"]) == ("gres", 2)
    gres = result["metrics"]["gres"]
    assert gres["TP"] + gres["FN"] == 1 and gres["FP"] + gres["TN"] == 1  # one no-target, one target row
    assert all(0.0 <= gres[k] <= 100.0 for k in ("gIoU", "cIoU", "N-acc", "T-acc"))
    assert result["metrics"]["grec"]["num_samples"] == 2  # boxes from the connected components


def test_res_on_refcoco_style_data(tmp_path, model_dir):
    data = tmp_path / "refcoco"
    prepare_dataset(
        "refcoco",
        rf.make_refer_style(tmp_path / "src", "refcoco", "unc", rf.refcoco_refs()),
        data,
        progress=False,
    )
    out = tmp_path / "m.json"
    args = ["--model", str(model_dir), "--dataset", str(data), "--split", "train", "--resolution", "model"]
    _script().main([*args, "--output", str(out)])
    result = json.loads(out.read_text())
    assert (result["benchmark"], result["resolution"]) == ("res", "64x64")
    assert {"mIoU", "oIoU", "P@0.5", "P@0.9"} <= set(result["metrics"]["res"])
    assert result["metrics"]["rec"]["num_samples"] == 2
