"""Load on ``refseg app``: N concurrent API clients with mixed valid and bad inputs, JSON on stdout.

```bash
python benchmarks/app_load.py                          # 8 clients x 9 requests, the bundled demo model
python benchmarks/app_load.py --clients 16 --requests 27 --model path/to/model
```

Starts ``refseg app`` in a subprocess on a free port of 127.0.0.1 (uploads limited to 0.05 MB so that an
oversized upload is cheap), warms it up with one request of each kind, measures the server's resident
memory (``VmRSS``), then lets ``--clients`` threads, each with its own ``gradio_client.Client``, send
``--requests`` requests cycling over the request kinds of :data:`CASES` (each client starting at another kind, so
every moment mixes valid and bad requests). Every answer is checked: a valid request must return a
verdict, a bad one its own message. Reports requests, errors, wrong answers, latency, the server's RSS
before, at peak and after, whether the server is still up, and the CPU model. The run is bounded by
``--requests`` and a deadline. ``tests/app/test_app_load.py`` runs the same load with assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: (name, image file, sentence (None: the scene's), model (None: the default), expected message; None: valid)
CASES: list[tuple[str, str, str | None, str | None, str | None]] = [
    ("valid", "scene.png", None, None, None),
    ("text_as_image", "notes.png", None, None, "The upload is not an image refseg can read"),
    ("long_sentence", "scene.png", "x" * 100_000, None, "100,000 characters long"),
    ("many_words", "scene.png", "a " * 100, None, "100 words; this app accepts at most 60"),
    ("valid", "scene.png", None, None, None),
    ("blank_sentence", "scene.png", "   ", None, "Type a sentence"),
    ("server_path_as_model", "scene.png", None, "/etc/passwd", "not in the list of choices"),
    ("oversized_upload", "big.png", None, None, "exceeds the maximum file size"),
    ("bad_threshold", "scene.png", None, None, "greater than maximum value"),
]
UPLOAD_LIMIT_MB = 0.05


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo``, and the number of CPUs this process may use."""
    names = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    return f"{names[0] if names else 'unknown'} ({len(os.sched_getaffinity(0))} CPUs usable)"


def make_inputs(folder: Path) -> tuple[Path, str]:
    """Write the request files (a scene, a text file named .png, an oversized file); return the folder and sentence."""
    from refseg.app.inference import synthetic_example

    folder.mkdir(parents=True, exist_ok=True)
    image, sentence = synthetic_example(4, 160)
    image.save(folder / "scene.png")
    (folder / "notes.png").write_text("this is a text file, not an image\n" * 20)
    (folder / "big.png").write_bytes(os.urandom(int(UPLOAD_LIMIT_MB * 1_000_000) + 10_000))
    return folder, sentence


def start_server(models: list[str], port: int, log: Path, device: str = "cpu") -> subprocess.Popen:
    """``refseg app`` in a subprocess on 127.0.0.1:``port`` (its output goes to ``log``)."""
    code = "import sys; from refseg_cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["app", "--host", "127.0.0.1", "--port", str(port), "--device", device]
    args += ["--max-upload-mb", str(UPLOAD_LIMIT_MB), "--model", *models]
    env = dict(
        os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")
    )
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> float:
    """Seconds until ``url`` answers; RuntimeError if the process exits or ``timeout_s`` passes."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"refseg app exited with status {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.monotonic() - start
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"refseg app did not answer on {url} within {timeout_s:.0f} s")


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server started by :func:`start_server` (by its PID): SIGINT, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass
class Outcome:
    """One request: its kind, whether the answer was the expected one, the message, seconds taken."""

    case: str
    ok: bool
    message: str
    seconds: float


def send(client: Any, folder: Path, sentence: str, model: str, case: tuple) -> Outcome:
    """Send one request of ``case`` and check its answer."""
    from gradio_client import handle_file

    name, file, text, case_model, expected = case
    threshold = 2.0 if name == "bad_threshold" else 0.5
    start = time.monotonic()
    try:
        _, _, verdict = client.predict(
            handle_file(str(folder / file)),
            text or sentence,
            case_model or model,
            threshold,
            0.5,
            api_name="/segment",
        )
        message, ok = (
            str(verdict),
            expected is None and str(verdict).startswith(("**Target found**", "**No target**")),
        )
    except Exception as err:  # noqa: BLE001 - every failure is an outcome to check
        message = f"{type(err).__name__}: {err}"
        ok = expected is not None and re.search(re.escape(expected), message) is not None
    return Outcome(name, ok, message[:300], time.monotonic() - start)


def run_load(
    url: str, folder: Path, sentence: str, model: str, clients: int, per_client: int, deadline_s: float
) -> list[Outcome]:
    """``clients`` threads, each with its own client, sending ``per_client`` requests cycling over :data:`CASES`."""
    from gradio_client import Client

    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def worker(k: int) -> None:
        client = Client(url, verbose=False)
        order = CASES[k % len(CASES) :] + CASES[: k % len(CASES)]
        for n in range(per_client):
            if time.monotonic() > stop_at:
                return
            outcome = send(client, folder, sentence, model, order[n % len(order)])
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, stop_at - time.monotonic()) + 30)
    return outcomes


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds until stopped; ``peak`` in MiB."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, RuntimeError):
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join(5)
        return self.peak


def measure(
    models: list[str], folder: Path, clients: int, per_client: int, deadline_s: float, settle_s: float = 2.0
) -> dict:
    """Start the server, warm it up, run the load, and return the report (the server is stopped)."""
    from gradio_client import Client

    from refseg.app.models import model_choices

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    process = start_server(models, port, folder / "server.log")
    try:
        folder, sentence = make_inputs(folder)  # while the server starts
        startup_s = wait_ready(url, process)
        warm = Client(url, verbose=False)
        model = next(iter(model_choices(models)))  # the default model's label
        warm_up = [send(warm, folder, sentence, model, case) for case in CASES]
        time.sleep(settle_s)
        rss_before = rss_mb(process.pid)
        sampler = RssSampler(process.pid)
        sampler.start()
        start = time.monotonic()
        outcomes = run_load(url, folder, sentence, model, clients, per_client, deadline_s)
        wall_s = time.monotonic() - start
        peak = sampler.stop()
        time.sleep(settle_s)
        after = send(warm, folder, sentence, model, CASES[0])  # still answering
        rss_after = rss_mb(process.pid)
        alive = process.poll() is None
    finally:
        stop_server(process)
    valid = [o.seconds for o in outcomes if o.case == "valid"]
    return {
        "cpu": cpu_model(),
        "clients": clients,
        "requests": len(outcomes),
        "expected_requests": clients * per_client,
        "valid_requests": len(valid),
        "bad_requests": len(outcomes) - len(valid),
        "wrong_answers": [o.__dict__ for o in outcomes if not o.ok],
        "warm_up_wrong": [o.__dict__ for o in warm_up if not o.ok],
        "server_up_after": alive and after.ok,
        "startup_s": round(startup_s, 2),
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(len(outcomes) / wall_s, 2) if wall_s else None,
        "valid_latency_median_s": round(sorted(valid)[len(valid) // 2], 3) if valid else None,
        "valid_latency_max_s": round(max(valid), 3) if valid else None,
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_mb": round(rss_after, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["demo"], help="models to serve (default: demo)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument(
        "--requests", type=int, default=len(CASES), help=f"requests per client (default {len(CASES)})"
    )
    parser.add_argument("--deadline", type=float, default=120.0, help="stop sending after this many seconds")
    parser.add_argument(
        "--workdir", default=None, help="folder for the request files (default: a temporary one)"
    )
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.workdir or tmp)
        report = measure(args.model, folder, args.clients, args.requests, args.deadline)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
