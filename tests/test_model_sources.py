"""--model from where an Ascend host can reach it: a hub name through $HF_ENDPOINT, ModelScope,
a folder. The hub is a real HTTP server on the loopback that serves a Hugging Face hub's layout
(model info, HEAD and GET with Range of the resolve URL) for the demo model; huggingface_hub
talks to it as to any mirror."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

import pytest

from common.model import hub
from common.model.demo_model import DEMO_PATH
from common.model.loading import check_model_source, fetched, resolve_model_source
from common.model.nemo_archive import ModelError
from tests.conftest import REPO

REPO_ID = "org/tiny"
NEMO_NAME = "tiny.nemo"
COMMIT = hashlib.sha1(b"the mirror's only commit").hexdigest()
CLIP = REPO / "examples" / "demo.wav"


class HubMirror:
    """A Hugging Face hub's layout for one repository holding a .nemo and a README.

    `cut_after`: the first GET of the .nemo sends that many bytes and drops the connection, and
    with `refuse_after_cut` every later GET gets 503 (the run fails; the next one resumes).
    `body`: what a GET of the .nemo sends instead of the file the HEAD describes.
    `claimed_size`: the size the model info and the HEAD give instead of the file's."""

    def __init__(self, data: bytes):
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.files = {NEMO_NAME: data, "README.md": b"# tiny\n"}
        self.cut_after: Optional[int] = None
        self.refuse_after_cut = False
        self.body: Optional[bytes] = None
        self.claimed_size: Optional[int] = None
        self.requests: list[tuple[str, str, Optional[str]]] = []  # (method, path, Range header)
        self._cut_done = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def nemo_gets(self) -> list[Optional[str]]:
        """The Range header of each GET of the .nemo."""
        return [r for method, path, r in self.requests if method == "GET" and path.endswith(NEMO_NAME)]

    def _size(self, name: str) -> int:
        return self.claimed_size if name == NEMO_NAME and self.claimed_size else len(self.files[name])

    def model_info(self) -> dict:
        siblings = []
        for name, content in self.files.items():
            entry = {"rfilename": name, "size": self._size(name), "blobId": hashlib.sha1(content).hexdigest()}
            if name.endswith(".nemo"):  # LFS files carry their sha256
                entry["lfs"] = {"size": self._size(name), "sha256": self.sha256, "pointerSize": 134}
            siblings.append(entry)
        return {"id": REPO_ID, "modelId": REPO_ID, "sha": COMMIT, "private": False, "siblings": siblings}

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _serve(self, head: bool):
                path = unquote(urlsplit(self.path).path)
                mirror.requests.append((self.command, path, self.headers.get("Range")))
                if path in (f"/api/models/{REPO_ID}", f"/api/models/{REPO_ID}/revision/main"):
                    info = json.dumps(mirror.model_info()).encode()
                    return self._send(200, info, {"Content-Type": "application/json"})
                prefix = f"/{REPO_ID}/resolve/"
                if path.startswith(prefix) and path[len(prefix):].split("/", 1)[-1] in mirror.files:
                    return self._file(path[len(prefix):].split("/", 1)[1], head)
                self._send(404, b"not found", {"X-Error-Code": "RepoNotFound"})

            def _file(self, name: str, head: bool):
                content = mirror.files[name]
                etag = mirror.sha256 if name == NEMO_NAME else hashlib.sha1(content).hexdigest()
                headers = {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT, "Accept-Ranges": "bytes"}
                if head:
                    headers["Content-Length"] = str(mirror._size(name))
                    return self._send(200, b"", headers, head=True)
                if name == NEMO_NAME and mirror.body is not None:
                    content = mirror.body
                if name == NEMO_NAME and mirror._cut_done and mirror.refuse_after_cut:
                    return self._send(503, b"busy", {})
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start:
                    headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
                part = content[start:]
                if name == NEMO_NAME and mirror.cut_after is not None and not mirror._cut_done:
                    mirror._cut_done = True
                    part = part[:mirror.cut_after]  # the headers promise the whole file
                    headers["Content-Length"] = str(len(content) - start)
                self._send(206 if start else 200, part, headers)

            def _send(self, status: int, body: bytes, headers: dict, head: bool = False):
                self.send_response(status)
                headers.setdefault("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        return Handler

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    server = HubMirror(DEMO_PATH.read_bytes())
    yield server
    server.close()


def blobs(cache: Path) -> list[str]:
    folder = cache / "models--org--tiny" / "blobs"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def snapshot(cache: Path) -> Path:
    return cache / "models--org--tiny" / "snapshots" / COMMIT / NEMO_NAME


def hub_env(tmp_path: Path, endpoint: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    return {**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), **extra}


def run_inference(env: dict, *argv):
    return subprocess.run([sys.executable, str(REPO / "inference.py"), *argv], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)


def test_hub_name_through_hf_endpoint_transcribes_then_runs_offline_from_the_cache(mirror, tmp_path):
    env = hub_env(tmp_path, mirror.url)
    first = run_inference(env, "--model", REPO_ID, "--device", "cpu", "--json", str(CLIP))
    assert first.returncode == 0, first.stderr
    document = json.loads(first.stdout)
    text = document["results"][0]["text"]
    assert text.strip() and document["model"]["loader"].startswith("fast")  # the toolkit's loader, not NeMo's
    cached = snapshot(tmp_path / "hf" / "hub")
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == mirror.sha256  # the mirror's file, whole
    assert ("HEAD", f"/{REPO_ID}/resolve/{COMMIT}/{NEMO_NAME}", None) in mirror.requests
    assert mirror.nemo_gets() == [None] and "%|" not in first.stderr  # one plain GET; no bar in a pipe

    asked = len(mirror.requests)
    offline = run_inference({**env, "HF_HUB_OFFLINE": "1"}, "--model", REPO_ID, "--device", "cpu", "--json", str(CLIP))
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["results"][0]["text"] == text
    assert len(mirror.requests) == asked and "unreachable" not in offline.stderr  # offline: not even a try


def test_a_cut_download_resumes_on_the_next_run_with_a_range_request(tmp_path):
    """huggingface_hub writes what it receives in 10 MiB chunks: a file of 24 MiB cut at 15 MiB
    keeps at least one chunk. The content need not be a model: nothing loads it."""
    import random

    mirror = HubMirror(random.Random(0).randbytes(24 << 20))
    mirror.cut_after, mirror.refuse_after_cut = 15 << 20, True
    try:
        with pytest.raises(ModelError) as failed:
            hub.fetch_huggingface(REPO_ID, endpoint=mirror.url, cache_dir=tmp_path, progress=False)
        partial = tmp_path / "models--org--tiny" / "blobs" / (mirror.sha256 + ".incomplete")
        kept = partial.stat().st_size
        assert 0 < kept <= mirror.cut_after and blobs(tmp_path) == [partial.name] and not snapshot(tmp_path).exists()
        message = str(failed.value)
        assert f"stopped at {kept} of {len(mirror.data)} bytes" in message and "run again to resume" in message
        assert "\n" not in message

        mirror.refuse_after_cut = False
        path = hub.fetch_huggingface(REPO_ID, endpoint=mirror.url, cache_dir=tmp_path, progress=False).path
        assert mirror.nemo_gets()[-1] == f"bytes={kept}-"
        assert Path(path).read_bytes() == mirror.data and blobs(tmp_path) == [mirror.sha256]
    finally:
        mirror.close()


@pytest.mark.parametrize("damage", ["shorter", "one byte changed"])
def test_a_file_unlike_the_hubs_description_is_refused_and_deleted(mirror, tmp_path, damage):
    size, middle = len(mirror.data), len(mirror.data) // 2
    if damage == "shorter":
        mirror.body, expected = mirror.data[:-1000], f"got {size - 1000} bytes, the hub says {size}"
    else:
        mirror.body, expected = bytearray(mirror.data), "sha256"
        mirror.body[middle] ^= 1
    with pytest.raises(ModelError) as refused:
        hub.fetch_huggingface(REPO_ID, endpoint=mirror.url, cache_dir=tmp_path, progress=False)
    message = str(refused.value)
    assert expected in message and "is not the hub's file" in message and "\n" not in message
    assert blobs(tmp_path) == [] and not snapshot(tmp_path).exists()


def test_the_script_refuses_a_wrong_size_in_one_line(mirror, tmp_path):
    mirror.body = mirror.data[:-1000]
    proc = run_inference(hub_env(tmp_path, mirror.url), "--model", REPO_ID, "--device", "cpu", str(CLIP))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and f"the hub says {len(mirror.data)}" in errors[0]
    assert blobs(tmp_path / "hf" / "hub") == []


def test_an_unreachable_endpoint_is_one_line_naming_it_and_the_alternatives(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    proc = run_inference(hub_env(tmp_path, endpoint), "--model", REPO_ID, "--device", "cpu", str(CLIP))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1, proc.stderr
    for named in (endpoint, "HF_ENDPOINT", f"modelscope:{REPO_ID}", "local .nemo"):
        assert named in errors[0]


def check_in_subprocess(env: dict, spec: str = REPO_ID) -> dict:
    """check_model_source as a fresh process sees it: huggingface_hub reads HF_* at import."""
    code = ("import json, sys; from common.model.loading import check_model_source; "
            "print(json.dumps(check_model_source(sys.argv[1])._asdict()))")
    proc = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_check_model_source_reports_endpoint_size_and_room_without_downloading(mirror, tmp_path):
    env = hub_env(tmp_path, mirror.url)
    check = check_in_subprocess(env)
    assert check["ok"] and check["size"] == len(mirror.data), check
    assert check["message"].startswith(f"hub at {mirror.url}/{REPO_ID} {NEMO_NAME}") and "free" in check["message"]
    assert mirror.nemo_gets() == [] and not (tmp_path / "hf").exists()  # a HEAD, nothing downloaded

    hub.fetch_huggingface(REPO_ID, endpoint=mirror.url, cache_dir=tmp_path / "hf" / "hub", progress=False)
    check = check_in_subprocess(env)
    assert check["ok"] and check["message"].startswith("cache:") and "up to date" in check["message"]
    check = check_in_subprocess({**env, "HF_HUB_OFFLINE": "1"})
    assert check["ok"] and str(snapshot(tmp_path / "hf" / "hub")) in check["message"]
    check = check_in_subprocess({**env, "HF_ENDPOINT": "http://127.0.0.1:9"})  # nobody there: the cache will do
    assert check["ok"] and check["message"].startswith("cache:")
    assert "http://127.0.0.1:9 unreachable" in check["message"]

    mirror.claimed_size = 2**60  # no disk has room for that
    check = check_in_subprocess(env)
    assert not check["ok"] and check["size"] == 2**60 and "needed" in check["message"], check
    assert len(mirror.nemo_gets()) == 1  # still only the one download above


def test_check_model_source_offline_without_the_file(tmp_path):
    check = check_in_subprocess(hub_env(tmp_path, "http://127.0.0.1:9", HF_HUB_OFFLINE="1"))
    assert not check["ok"] and "HF_HUB_OFFLINE" in check["message"]


def test_modelscope_names_its_pip_command_when_the_package_is_missing():
    import importlib.util

    if importlib.util.find_spec("modelscope") is not None:
        pytest.skip("modelscope is installed here: the missing-package message cannot be seen")
    pin = next(line for line in hub.HUB_REQUIREMENTS.read_text().splitlines() if line.startswith("modelscope=="))
    source = resolve_model_source(f"modelscope:{REPO_ID}")  # the name alone: nothing imported yet
    with pytest.raises(ModelError) as missing:
        fetched(source)
    assert f"pip install {pin}" in str(missing.value) and "\n" not in str(missing.value)
    check = check_model_source(f"modelscope:{REPO_ID}")
    assert not check.ok and f"pip install {pin}" in check.message


def test_a_folder_holding_one_nemo_is_that_nemo(tmp_path):
    folder = tmp_path / "copied-by-hand"
    folder.mkdir()
    shutil.copy(DEMO_PATH, folder / NEMO_NAME)
    (folder / "README.md").write_text("# tiny\n")
    source = resolve_model_source(str(folder))
    assert (source.kind, source.path) == ("nemo_file", str(folder / NEMO_NAME))
    assert check_model_source(str(folder)).size == DEMO_PATH.stat().st_size
    shutil.copy(DEMO_PATH, folder / "other.nemo")
    with pytest.raises(ModelError, match="several .nemo files"):
        resolve_model_source(str(folder))


def test_the_dry_run_says_which_source_the_model_comes_from_without_downloading(mirror, tmp_path):
    env = hub_env(tmp_path, mirror.url)
    done = subprocess.run([sys.executable, str(REPO / "check_accuracy_run_perf.py"), "--dry-run", "--json",
                           "--model", REPO_ID, "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    model = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "model")
    assert model["status"] == "PASS" and model["value"].startswith(f"hub at {mirror.url}/{REPO_ID}"), model
    assert mirror.nemo_gets() == []  # nothing downloaded

    unreachable = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, str(REPO / "check_accuracy_run_perf.py"), "--dry-run", "--json",
                           "--model", REPO_ID, "--device", "cpu"], cwd=tmp_path, env=unreachable,
                          capture_output=True, text=True, timeout=300)
    model = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "model")
    assert done.returncode == 1 and model["status"] == "FAIL" and "HF_ENDPOINT" in model["fix"], model
