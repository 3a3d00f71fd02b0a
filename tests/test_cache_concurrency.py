"""Many processes building and extracting the same model at once share one cache safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

N_PROCESSES = 6
# One interpreter imports NeMo once (the slow part, ~15 s of CPU), then forks the processes; each
# waits on a pipe that the parent closes once all exist, so all ask for random:tiny together.
# They are separate processes with their own file descriptors and file locks, as separate runs are.
FORK_AND_LOAD = """
import json, os, sys, traceback
from common.model.loading import import_nemo_asr, load_model
import_nemo_asr()
out, count = sys.argv[1], int(sys.argv[2])
start_reader, start_writer = os.pipe()
children = []
for number in range(count):
    pid = os.fork()
    if pid == 0:
        os.close(start_writer)
        os.read(start_reader, 1)  # returns at EOF: when the parent closes its end
        try:
            info = load_model("random:tiny", "cpu").info
            with open(os.path.join(out, f"{number}.json"), "w") as handle:
                json.dump(info, handle)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    children.append(pid)
os.close(start_writer)
print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]))
"""


def run_together(cache: Path, out: Path) -> tuple[list[int], str]:
    out.mkdir()
    env = {**os.environ, "PARAKEET_CACHE_DIR": str(cache), "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}
    proc = subprocess.run([sys.executable, "-c", FORK_AND_LOAD, str(out), str(N_PROCESSES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_concurrent_first_uses_all_succeed_with_one_build_and_one_extraction(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    exit_codes, stderr = run_together(cache, out)
    assert exit_codes == [0] * N_PROCESSES, stderr[-3000:]
    loaders = [json.loads((out / f"{n}.json").read_text())["loader"] for n in range(N_PROCESSES)]
    assert not [loader for loader in loaders if "failed" in loader], loaders
    assert sorted(loaders) == ["fast (extracted to cache)"] + ["fast (extraction cache reused)"] * (N_PROCESSES - 1)
    assert len(list(cache.glob("random-tiny-*.nemo"))) == 1, "built once"
    assert not list(cache.glob(".*.tmp")), "no half-written model left behind"
    extracted = cache / "extracted"
    versions = [entry for entry in extracted.iterdir() if not entry.name.startswith(".")]
    assert len(versions) == 1, versions
    assert (versions[0] / "model_config.yaml").is_file() and (versions[0] / "model_weights.ckpt").is_file()
    assert not list(extracted.glob(".*.partial-*")), "no half-written extraction left behind"
