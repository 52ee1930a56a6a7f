"""``refseg app`` under load on 127.0.0.1: 8 concurrent clients, mixed valid and bad requests.

The server runs as ``refseg app`` in a subprocess (its RSS is measured from ``/proc``); each client sends
four requests cycling over the request kinds of ``benchmarks/app_load.py`` (valid requests, a text file
as the image, a 100,000-character sentence, too many words, a blank sentence, a server path as the
model, an oversized upload, a threshold out of range), each client starting at another kind. The loop
is bounded (four requests per client and a deadline).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

CLIENTS = 8
PER_CLIENT = 4  # 32 requests: 7 valid, 25 of the 7 bad kinds
RSS_GROWTH_LIMIT_MB = 80.0


def test_server_stays_up_answers_every_bad_input_and_memory_returns(tmp_path):
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    from benchmarks.app_load import measure

    report = measure(
        ["demo"], tmp_path, clients=CLIENTS, per_client=PER_CLIENT, deadline_s=60.0, settle_s=0.5
    )
    print(report)  # numbers for the log (pytest -s)
    assert report["server_up_after"]
    assert report["warm_up_wrong"] == [] and report["wrong_answers"] == []
    assert (
        report["requests"] == CLIENTS * PER_CLIENT and report["valid_requests"] == 7
    )  # none cut by the deadline
    assert report["rss_after_mb"] - report["rss_before_mb"] < RSS_GROWTH_LIMIT_MB
