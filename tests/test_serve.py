"""serve.py end to end: the server started as a subprocess on a free loopback port (CPU, demo
model), called with the official `openai` client and with plain HTTP (httpx), and checked
against inference.py's own output for the same files."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("fastapi", reason="the server's stack is not installed: pip install -r requirements-serve.txt")
openai = pytest.importorskip("openai", reason="the openai client is not installed: requirements-serve.txt")
httpx = pytest.importorskip("httpx")

from common.engine.records import FileRecord  # noqa: E402
from common.outputs.formats import render_srt, render_vtt  # noqa: E402

DEMO = REPO / "examples" / "demo.wav"
SAMPLE = REPO / "examples" / "sample.wav"
START_SECONDS = 180  # NeMo's import and the model's load, on a busy 2-core machine
REQUEST_SECONDS = 120
MAX_QUEUE = 24
MAX_UPLOAD_MB = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """serve.py in a subprocess; its log in a file (a pipe nobody reads would block it)."""

    def __init__(self, log: Path, *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "serve.py"), "--model", "demo", "--device", "cpu", "--host", "127.0.0.1",
             "--port", str(self.port), *options], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("w"))

    def wait_ready(self) -> list[str]:
        """The /ready states seen on the way (each once), ending with "ready"."""
        deadline, seen = time.monotonic() + START_SECONDS, []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve.py exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                answer = httpx.get(f"{self.url}/ready", timeout=5)
                seen += [answer.json()["status"]] if answer.json()["status"] not in seen else []
                if answer.status_code == 200:
                    return seen
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        pytest.fail(f"serve.py not ready within {START_SECONDS} s:\n{self.log.read_text()[-3000:]}")

    def client(self):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", timeout=REQUEST_SECONDS, max_retries=0)

    def post(self, path: Path = DEMO, **fields):
        files = {"file": (path.name, path.read_bytes(), "audio/wav")} if path is not None else None
        return httpx.post(f"{self.url}/v1/audio/transcriptions", data={"model": "demo", **fields}, files=files,
                          timeout=REQUEST_SECONDS)

    def metrics(self) -> dict:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """The server and inference.py's reference run, started together (both load the model)."""
    folder = tmp_path_factory.mktemp("serve")
    server = Server(folder / "serve.log", "--max-queue", str(MAX_QUEUE), "--max-batch-files", "8",
                    "--max-wait-ms", "100", "--max-upload-mb", str(MAX_UPLOAD_MB))
    reference = subprocess.Popen([sys.executable, "inference.py", "--model", "demo", "--device", "cpu",
                                  "--timestamps", "all", "--json", str(DEMO), str(SAMPLE)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield server, reference
    finally:
        server.stop()
        reference.kill()


@pytest.fixture(scope="module")
def reference(started) -> dict[str, FileRecord]:
    """inference.py's records for demo.wav and sample.wav, by file name."""
    out, err = started[1].communicate(timeout=START_SECONDS)
    assert started[1].returncode == 0, err
    return {Path(entry["path"]).name: FileRecord.from_dict(entry) for entry in json.loads(out)["results"]}


@pytest.fixture(scope="module")
def server(started) -> Server:
    started[0].wait_ready()
    return started[0]


def stamps(record: FileRecord, kind: str) -> list[dict]:
    return [t.to_dict(kind) for t in record.timestamps[kind]]


def test_openai_client_gets_inference_text(server, reference):
    answer = server.client().audio.transcriptions.create(model="demo", file=DEMO.open("rb"))
    assert answer.text == reference["demo.wav"].text
    assert [m.id for m in server.client().models.list().data] == ["demo"]


def test_word_timestamps_equal_inference(server, reference):
    answer = server.client().audio.transcriptions.create(model="demo", file=DEMO.open("rb"),
                                                         response_format="verbose_json",
                                                         timestamp_granularities=["word"])
    assert [w.model_dump() for w in answer.words] == stamps(reference["demo.wav"], "word")
    assert answer.text == reference["demo.wav"].text


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_every_response_format(server, reference, response_format):
    expected = reference["demo.wav"]
    answer = server.post(response_format=response_format)
    assert answer.status_code == 200, answer.text
    if response_format == "json":
        assert answer.json() == {"text": expected.text}
    elif response_format == "text":
        assert answer.text == expected.text + "\n"  # inference.py's text output for one file
    elif response_format == "srt":  # inference.py --output-format srt renders this record so
        assert answer.text == render_srt(expected) and "-->" in answer.text
    elif response_format == "vtt":
        assert answer.text == render_vtt(expected) and answer.text.startswith("WEBVTT")
    else:  # OpenAI's default granularity: segments
        body = answer.json()
        assert body["text"] == expected.text and body["duration"] == expected.duration
        assert [{k: s[k] for k in ("text", "start", "end")} for s in body["segments"]] == \
            [{"text": t["segment"], "start": t["start"], "end": t["end"]} for t in stamps(expected, "segment")]
        assert "words" not in body


def test_both_granularities(server, reference):
    body = server.post(response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]}).json()
    assert [{"word": w["word"], "start": w["start"], "end": w["end"]} for w in body["words"]] == \
        stamps(reference["demo.wav"], "word")
    assert [s["text"] for s in body["segments"]] == [t.text for t in reference["demo.wav"].timestamps["segment"]]


def batch_counts(metrics: dict) -> tuple[float, float]:
    """(model calls, model calls of one request) from the batch-size histogram."""
    return (metrics['parakeet_batch_files_count{"device": "cpu"}'],
            metrics['parakeet_batch_files_bucket{"device": "cpu", "le": "1.0"}'])


def test_concurrent_requests_are_batched_and_answered_as_alone(server, reference):
    before = server.metrics()
    paths = [DEMO, SAMPLE] * (MAX_QUEUE // 2)
    client = server.client()

    def ask(n: int):  # every third asks for word timestamps: requests of two kinds wait together
        if n % 3:
            return client.audio.transcriptions.create(model="demo", file=paths[n].open("rb")).text, None
        answer = client.audio.transcriptions.create(model="demo", file=paths[n].open("rb"),
                                                    response_format="verbose_json", timestamp_granularities=["word"])
        return answer.text, [w.model_dump() for w in answer.words]

    with ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(ask, range(len(paths))))
    assert [text for text, _ in answers] == [reference[p.name].text for p in paths]
    assert all(words == stamps(reference[p.name], "word") for p, (_, words) in zip(paths, answers) if words)
    after = server.metrics()
    calls = batch_counts(after)[0] - batch_counts(before)[0]
    single = batch_counts(after)[1] - batch_counts(before)[1]
    assert calls < len(paths), "every request had a model call of its own"
    assert single < calls, "no model call took more than one request"
    audio = 'parakeet_audio_seconds_total{"device": "cpu"}'
    seconds = after[audio] - before[audio]
    assert seconds == pytest.approx(sum(reference[p.name].duration for p in paths), abs=0.01)
    assert after['parakeet_requests_total{"device": "cpu", "endpoint": "/v1/audio/transcriptions", "status": "200"}'] \
        >= len(paths)


def error_of(answer, status: int, param=None) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    return error["message"]


def test_errors_in_openai_shape_and_the_server_stays_up(server, reference, tmp_path):
    assert "file" in error_of(server.post(path=None), 400, "file")
    assert "model" in error_of(httpx.post(f"{server.url}/v1/audio/transcriptions", timeout=30,
                                          files={"file": ("demo.wav", DEMO.read_bytes())}), 400, "model")
    assert "whisper-1" in error_of(server.post(model="whisper-1"), 400, "model")
    assert "xml" in error_of(server.post(response_format="xml"), 400, "response_format")
    assert "verbose_json" in error_of(server.post(**{"timestamp_granularities[]": "word"}), 400,
                                      "timestamp_granularities[]")
    assert "demo.txt" in error_of(server.post(path=REPO / "examples" / "demo.txt"), 400, "file")
    assert "multipart" in error_of(httpx.post(f"{server.url}/v1/audio/transcriptions", json={"model": "demo"},
                                              timeout=30), 415)
    big = tmp_path / "big.wav"
    big.write_bytes(DEMO.read_bytes() * (1 + MAX_UPLOAD_MB * 2**20 // DEMO.stat().st_size))
    assert "--max-upload-mb" in error_of(server.post(path=big), 413, "file")
    with pytest.raises(openai.BadRequestError):
        server.client().audio.transcriptions.create(model="demo", file=(REPO / "examples" / "demo.txt").open("rb"))
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert server.post().json() == {"text": reference["demo.wav"].text}


def test_full_queue_is_answered_429_with_retry_after(server, reference):
    data = DEMO.read_bytes()

    def post(_):
        return httpx.post(f"{server.url}/v1/audio/transcriptions", data={"model": "demo"},
                          files={"file": ("demo.wav", data)}, timeout=REQUEST_SECONDS)

    with ThreadPoolExecutor(4 * MAX_QUEUE) as pool:
        answers = list(pool.map(post, range(4 * MAX_QUEUE)))
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "no request was refused although the queue holds at most --max-queue"
    assert all(int(a.headers["Retry-After"]) >= 1 and a.json()["error"]["code"] == "queue_full" for a in refused)
    assert all(a.json() == {"text": reference["demo.wav"].text} for a in answers if a.status_code != 429)
    assert len(refused) < len(answers)


def test_sigterm_answers_requests_in_flight_and_exits_0(tmp_path, reference):
    server = Server(tmp_path / "serve.log", "--max-wait-ms", "300", "--drain-seconds", "60")
    try:
        assert server.wait_ready() == ["loading", "ready"]  # NeMo's import alone takes seconds
        answers: list = []

        def post(path):
            answers.append(server.post(path=path))

        threads = [threading.Thread(target=post, args=(p,)) for p in [DEMO, SAMPLE] * 4]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while server.metrics()['parakeet_queue_depth{"device": "cpu"}'] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until requests are in flight
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(REQUEST_SECONDS)
        assert server.process.wait(90) == 0, server.log.read_text()[-3000:]
        assert sorted(a.json()["text"] for a in answers) == sorted(reference[p.name].text for p in [DEMO, SAMPLE] * 4)
    finally:
        server.stop()


def planned(jobs: list[tuple[float, str]], **limits) -> list[list[int]]:
    """The batches the worker forms from requests of (seconds, timestamps) waiting together,
    as indices into `jobs` (no model: the worker's planning alone)."""
    import numpy as np

    from common.serve.metrics import Metrics
    from common.serve.settings import ServeSettings
    from common.serve.worker import Job, Worker

    worker = Worker(lambda: None, ServeSettings(max_wait_ms=0, **limits), Metrics("cpu"))
    waiting = [Job(np.zeros(int(seconds * 16000), np.float32), kind) for seconds, kind in jobs]
    worker._pending.extend(waiting)
    batches = []
    while worker._pending:
        batches.append([next(n for n, w in enumerate(waiting) if w is job) for job in worker._next_batch()])
    return batches


def test_batches_keep_the_padded_budget_and_the_long_audio_rule():
    from common.choices import LONG_AUDIO_SECONDS

    assert planned([(10, "none")] * 5, max_batch_seconds=30, max_batch_files=16) == [[0, 1, 2], [3, 4]]
    assert planned([(1, "none")] * 5, max_batch_seconds=100, max_batch_files=2) == [[0, 1], [2, 3], [4]]
    assert planned([(1, "none"), (1, "word"), (1, "none"), (1, "word")]) == [[0, 2], [1, 3]]
    long = LONG_AUDIO_SECONDS + 1
    assert planned([(1, "none"), (long, "none"), (1, "none")], max_batch_seconds=10 * long) == [[0, 2], [1]]
    assert planned([(long, "none"), (1, "none")], max_batch_seconds=10 * long) == [[0], [1]]
