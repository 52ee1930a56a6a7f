"""The app's HTTP API through ``gradio_client`` against a server on 127.0.0.1 (named endpoints, bad inputs)."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from refseg.app.inference import DEMO_MODEL, synthetic_example
from refseg.app.limits import AppLimits
from tests.processing_helpers import save_tiny_instalign

pytestmark = pytest.mark.slow
LIMITS = AppLimits(max_upload_mb=0.05, max_sentence_chars=200, max_sentence_words=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    from refseg.app.blocks import build_app, launch_app

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    tiny = save_tiny_instalign(tmp_path_factory.mktemp("api") / "tiny")
    app = build_app(models=["demo", str(tiny)], device="cpu", limits=LIMITS)
    port = _free_port()
    launch_app(app, "127.0.0.1", port, block=False)
    try:
        yield app, f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[1], verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api_files")
    image, sentence = synthetic_example(4, 160)
    image.save(folder / "scene.png")
    (folder / "notes.png").write_text("this is a text file\n" * 10)
    (folder / "notes.txt").write_text("this is a text file\n")
    (folder / "big.png").write_bytes(os.urandom(60_000))  # over the 50 KB limit
    return folder, sentence


def test_endpoints_and_outputs_are_named(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/segment", "/example"}
    assert not api["unnamed_endpoints"]
    segment = api["named_endpoints"]["/segment"]
    assert [p["parameter_name"] for p in segment["parameters"]] == [
        "image",
        "sentence",
        "model",
        "threshold",
        "mask_threshold",
    ]
    assert [r["label"] for r in segment["returns"]] == ["Overlay", "Instances", "verdict"]
    assert not re.search(r"value_\d+|_segment_\d", json.dumps(api))


def test_the_model_dropdown_offers_the_configured_models_only(server):
    (model,) = [c for c in server[0].config["components"] if c["props"].get("elem_id") == "model"]
    assert model["type"] == "dropdown" and model["props"]["allow_custom_value"] is False
    assert [value for _, value in model["props"]["choices"]] == [DEMO_MODEL, "tiny"]
    (sentence,) = [c for c in server[0].config["components"] if c["props"].get("elem_id") == "sentence"]
    assert sentence["props"]["max_length"] == 200


def test_segment_and_example_through_the_api(client, files):
    from gradio_client import handle_file

    folder, sentence = files
    overlay, table, verdict = client.predict(
        handle_file(str(folder / "scene.png")), sentence, DEMO_MODEL, 0.5, 0.5, api_name="/segment"
    )
    assert os.path.isfile(overlay) and table["headers"] == ["#", "score", "xmin", "ymin", "xmax", "ymax"]
    assert verdict.startswith(("**Target found**", "**No target**"))
    image, example_sentence, seed = client.predict("tiny", api_name="/example")
    assert os.path.isfile(image) and example_sentence and isinstance(seed, int | float)


BAD_INPUTS = [  # (image file, sentence, model, threshold, what the message says)
    ("notes.png", None, DEMO_MODEL, 0.5, "The upload is not an image refseg can read"),
    ("notes.txt", None, DEMO_MODEL, 0.5, "The upload is not an image refseg can read"),
    (
        "scene.png",
        "x" * 1_000_000,
        DEMO_MODEL,
        0.5,
        "1,000,000 characters long; this app accepts at most 200",
    ),
    ("scene.png", "red " * 21, DEMO_MODEL, 0.5, "21 words; this app accepts at most 20 words"),
    ("scene.png", "   ", DEMO_MODEL, 0.5, "Type a sentence"),
    ("scene.png", None, "/etc/passwd", 0.5, "not in the list of choices"),
    ("scene.png", None, DEMO_MODEL, 2.0, "greater than maximum value 1"),
]
BAD_IDS = ["text-as-png", "text-file", "1MB-sentence", "21-words", "blank", "server-path-model", "threshold"]


@pytest.mark.parametrize("name, sentence, model, threshold, message", BAD_INPUTS, ids=BAD_IDS)
def test_each_bad_input_gets_its_own_message(client, files, name, sentence, model, threshold, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    folder, good_sentence = files
    with pytest.raises(AppError, match=message) as err:
        client.predict(
            handle_file(str(folder / name)),
            sentence or good_sentence,
            model,
            threshold,
            0.5,
            api_name="/segment",
        )
    assert str(folder) not in str(err.value) and "/tmp/gradio" not in str(err.value)


def test_uploads_over_the_limit_are_refused(client, files):
    from gradio_client import handle_file

    folder, sentence = files
    with pytest.raises(Exception, match="exceeds the maximum file size of 50000 bytes"):
        client.predict(
            handle_file(str(folder / "big.png")), sentence, DEMO_MODEL, 0.5, 0.5, api_name="/segment"
        )


def _call(url: str, endpoint: str, data: list) -> str:
    """The raw REST API: POST the inputs, read the event stream of the answer."""
    body = json.dumps({"data": data}).encode()
    request = urllib.request.Request(
        f"{url}gradio_api/call/{endpoint}", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{endpoint}/{event_id}", timeout=60) as response:
        return response.read().decode()


def test_server_files_cannot_be_passed_as_the_image(server, files):
    _, sentence = files
    for path in ("/etc/passwd", "/etc/nowhere"):
        answer = _call(
            server[1],
            "segment",
            [{"path": path, "meta": {"_type": "gradio.FileData"}}, sentence, DEMO_MODEL, 0.5, 0.5],
        )
        assert "event: error" in answer and "root:" not in answer


def test_server_files_are_not_served(server):
    for path in ("/etc/passwd", os.path.abspath("pyproject.toml")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server[1]}gradio_api/file={path}", timeout=30)
        assert err.value.code == 403


def test_images_sent_as_data_urls_are_read_and_size_checked(server, files):
    folder, sentence = files
    png = base64.b64encode((folder / "scene.png").read_bytes()).decode()
    image = {"url": f"data:image/png;base64,{png}", "meta": {"_type": "gradio.FileData"}}
    answer = _call(server[1], "segment", [image, sentence, DEMO_MODEL, 0.5, 0.5])
    assert "event: complete" in answer and "p(target) =" in answer
    from gradio.utils import get_upload_folder

    assert not list(Path(get_upload_folder()).glob("refseg-data-url-*"))  # the decoded file is removed
    big = {"url": "data:image/png;base64," + "A" * 100_000, "meta": {"_type": "gradio.FileData"}}
    answer = _call(server[1], "segment", [big, sentence, DEMO_MODEL, 0.5, 0.5])
    assert (
        "event: error" in answer
        and "The image file is 0.1 MB; this app accepts images up to 0.05 MB" in answer
    )
