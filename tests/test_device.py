"""The device layer: resolution on this machine, diagnoses of a broken torch_npu, helpers, and
the real torch-npu wheel without CANN in a separate environment."""

from __future__ import annotations

import importlib
import os
import re
import subprocess

import pytest

from common.device import accelerators as device
from common.device.accelerators import DeviceError, diagnose_torch_npu_import_error, resolve_device
from tests.conftest import REPO

TORCH_NPU_INSTALLED = importlib.util.find_spec("torch_npu") is not None


def test_cpu_is_always_available():
    choice = resolve_device("cpu")
    assert choice.device == "cpu" and choice.type == "cpu" and choice.warning is None


@pytest.mark.skipif(TORCH_NPU_INSTALLED, reason="torch_npu is installed in this environment")
def test_auto_without_torch_npu_picks_cpu_and_says_why():
    choice = resolve_device("auto")
    assert choice.device == "cpu"
    assert "torch_npu is not installed" in choice.reason and "CUDA: not available" in choice.reason
    assert choice.warning is None  # no torch_npu at all is the normal case on a CPU host


@pytest.mark.skipif(TORCH_NPU_INSTALLED, reason="torch_npu is installed in this environment")
def test_npu_without_torch_npu_is_a_setup_error():
    with pytest.raises(DeviceError, match="torch_npu is not installed") as info:
        resolve_device("npu:0")
    assert info.value.exit_code == 2


def test_cuda_without_cuda_is_a_setup_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("spec", ["gpu", "npu:", "cpu:1", "auto:0", "npu:-1", ""])
def test_malformed_device_specs(spec):
    with pytest.raises(DeviceError, match="--device"):
        resolve_device(spec)


def test_cann_missing_is_diagnosed_from_the_real_error_chain():
    try:
        try:
            raise ImportError("libhccl.so: cannot open shared object file: No such file or directory")
        except ImportError as cause:
            raise RuntimeError("Failed to load the backend extension: torch_npu.") from cause
    except RuntimeError as error:
        message = diagnose_torch_npu_import_error(error)
    assert "CANN runtime not found (libhccl.so cannot be loaded)" in message
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in message


def test_unknown_import_failure_keeps_its_first_line():
    message = diagnose_torch_npu_import_error(ImportError("undefined symbol: _ZN3c10foo\nmore"))
    assert message == "import torch_npu failed: ImportError: undefined symbol: _ZN3c10foo"


@pytest.mark.skipif(TORCH_NPU_INSTALLED, reason="torch_npu is installed in this environment")
def test_version_mismatch_is_found_before_importing(tmp_path, monkeypatch):
    """A torch_npu built for another torch is named as such; it is not even imported."""
    package = tmp_path / "torch_npu"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    meta = tmp_path / "torch_npu-2.1.0.post8.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: torch_npu\nVersion: 2.1.0.post8\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    status = device.probe_npu()
    assert not status.usable
    assert "torch_npu 2.1.0.post8 requires torch 2.1.0" in status.diagnosis
    with pytest.raises(DeviceError, match="requires torch 2.1.0"):
        resolve_device("npu")
    choice = resolve_device("auto")
    assert choice.device == "cpu" and "requires torch 2.1.0" in choice.warning


def test_cpu_helpers():
    assert device.prepare_device("cpu") == []
    device.synchronize("cpu")
    assert device.device_name("cpu")
    memory = device.memory_bytes("cpu")
    assert memory["kind"] == "host rss" and memory["peak"] >= memory["current"] > 0


# ------------------------------------------------------------------ the real torch-npu wheel


def autoloads(python) -> bool:
    """Whether the torch_npu installed for `python` registers itself for `import torch` (2.5.1 on)."""
    probe = ("import importlib.metadata as m; print(any(e.value.startswith('torch_npu') for e in "
             "m.entry_points(group='torch.backends')))")
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"


@pytest.mark.slow
def test_plain_import_torch_fails_there_which_is_why_scripts_disable_autoload(torch_npu_env):
    """torch_npu 2.5.1+ is loaded by `import torch` itself and breaks it without CANN; older ones
    (2.4.0.postN) only fail on `import torch_npu`. Either way the device layer sees the CANN error."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    plain = subprocess.run([torch_npu_env, "-c", "import torch"], capture_output=True, text=True, env=env)
    explicit = subprocess.run([torch_npu_env, "-c", "import torch, torch_npu"], capture_output=True, text=True, env=env)
    assert explicit.returncode != 0 and re.search(r"lib\w+\.so", explicit.stderr), explicit.stderr[-1000:]
    if autoloads(torch_npu_env):
        assert plain.returncode != 0 and "libhccl.so" in plain.stderr
    else:
        assert plain.returncode == 0, plain.stderr[-1000:]


@pytest.mark.slow
def test_real_torch_npu_without_cann(torch_npu_env, tiny_nemo, clips):
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    script = [torch_npu_env, str(REPO / "inference.py"), "--model", str(tiny_nemo)]

    forced = subprocess.run(script + ["--device", "npu:0", clips[0]], capture_output=True, text=True, env=env)
    assert forced.returncode == 2
    assert forced.stderr.strip().splitlines() == [
        "error: --device npu: CANN runtime not found (libhccl.so cannot be loaded): install the CANN toolkit "
        "and run 'source /usr/local/Ascend/ascend-toolkit/set_env.sh' before starting"]

    auto = subprocess.run(script + ["--device", "auto", clips[0]], capture_output=True, text=True, env=env)
    assert auto.returncode == 0, auto.stderr
    lines = auto.stderr.splitlines()
    assert lines[0].startswith("warning: NPU not usable, falling back: CANN runtime not found")
    assert lines[1].startswith("device: cpu (auto:")
    assert auto.stdout.strip()
