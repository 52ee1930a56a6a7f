"""``import refseg``: light (no datasets, pycocotools or dataset builders), registers the Auto classes and
the pipeline task, and exposes every model's public classes at the top level."""

import json
import os
import subprocess
import sys
from pathlib import Path

import refseg

SRC = str(Path(refseg.__file__).resolve().parents[1])


def _run(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_import_refseg_is_light_and_registers_the_auto_classes_and_the_pipeline_task():
    code = (
        "import json, sys\n"
        "import refseg\n"
        "modules = sorted(sys.modules)\n"
        "from transformers import AutoConfig\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "registered = [type(AutoConfig.for_model('instalign')).__name__,\n"
        "              'referring-segmentation' in PIPELINE_REGISTRY.get_supported_tasks()]\n"
        "print(json.dumps([modules, registered]))"
    )
    modules, registered = json.loads(_run(code))
    assert "refseg" in modules and "refseg.models.instalign" in modules  # the test saw a real import
    heavy = [m for m in modules if m.split(".")[0] in ("datasets", "pycocotools", "evaluate")]
    assert heavy == [], heavy[:10]
    # no builder, synthetic scene generator, augmentation or metric module either
    loaded = [m for m in modules if m.startswith(("refseg.data.", "refseg.metrics", "refseg.training"))]
    assert loaded == [], loaded
    assert registered == ["InstAlignConfig", True]


def test_every_model_class_is_a_top_level_name():
    import refseg.models

    expected = [name for name in refseg.models.__all__ if name not in refseg.models.REGISTRY_NAMES]
    assert {"InstAlignConfig", "InstAlignForReferringSegmentation", "InstAlignProcessor"} <= set(expected)
    for name in expected:
        assert name in refseg.__all__
        assert getattr(refseg, name) is getattr(refseg.models, name)
    from refseg import InstAlignConfig, InstAlignForReferringSegmentation, InstAlignImageProcessor  # noqa: F401


def test_lazy_subpackages_resolve_every_public_name():
    for module in (refseg.data, refseg.metrics):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
        assert set(module.__all__) <= set(dir(module))
    assert refseg.data.decode_rle({"size": [2, 3], "counts": [1, 2, 3]}).sum() == 2
    from refseg.data import synthetic_tokenizer  # from-imports go through the lazy __getattr__ too

    assert callable(synthetic_tokenizer)


def test_unknown_attributes_still_raise():
    import pytest

    for module, name in (
        (refseg, "nonexistent"),
        (refseg.data, "build_nothing"),
        (refseg.metrics, "x_metric"),
    ):
        with pytest.raises(AttributeError, match=name):
            getattr(module, name)
