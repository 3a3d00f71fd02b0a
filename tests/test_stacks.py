"""The supported stacks: the CANN <-> torch_npu <-> torch matrix, the dry-run's advice for a host's
CANN (version files faked under a temporary Ascend root), and the pinned files of every line."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.device import stacks
from tests.conftest import REPO


def fake_ascend_root(root: Path, cann: str, layout: str = "toolkit", arch: str = "x86_64") -> Path:
    """An Ascend root holding only the version files a CANN install writes."""
    if layout == "toolkit":
        info = root / "ascend-toolkit" / "latest" / f"{arch}-linux" / "ascend_toolkit_install.info"
    else:  # CANN 8.5 on: /usr/local/Ascend/cann-X.Y.Z/<arch>-linux/
        info = root / f"cann-{cann}" / f"{arch}-linux" / "ascend_toolkit_install.info"
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(f"package_name=Ascend-cann-toolkit\nversion={cann}\narch={arch}\n")
    (root / "driver").mkdir(parents=True, exist_ok=True)
    (root / "driver" / "version.info").write_text("Version=24.1.0\n")
    return root


def test_cann_versions_order_like_ascend_releases():
    order = ["8.0.RC3", "8.0.0", "8.1.RC1", "8.2.RC1.alpha003", "8.3.RC1", "8.5.0", "9.0.0", "9.1.0"]
    assert sorted(order, key=stacks.cann_key) == order
    with pytest.raises(ValueError):
        stacks.cann_key("latest")


@pytest.mark.parametrize("cann, fitting, line, torch_npu", [
    ("8.0.0", ["2.4.0.post2", "2.3.1.post4", "2.1.0.post10"], "torch2.4", "2.4.0.post2"),
    ("8.1.RC1", ["2.5.1", "2.4.0.post4", "2.3.1.post6", "2.1.0.post12"], "torch2.4", "2.4.0.post4"),
    ("8.2.RC1", ["2.6.0", "2.5.1.post1", "2.4.0.post4", "2.3.1.post6", "2.1.0.post13"], "torch2.6", "2.6.0"),
    ("8.5.0", ["2.9.0", "2.8.0.post2", "2.7.1.post2", "2.6.0.post5", "2.5.1.post1", "2.4.0.post4", "2.3.1.post6",
               "2.1.0.post17"], "torch2.6", "2.6.0.post5"),
    ("9.1.0", ["2.13.0", "2.12.0", "2.11.0", "2.10.0.post4", "2.9.0.post6", "2.8.0.post4", "2.7.1.post8"],
     "current", "2.13.0"),
])
def test_which_torch_npu_and_line_fit_a_cann(cann, fitting, line, torch_npu):
    assert stacks.torch_npu_for_cann(cann) == fitting
    found, version = stacks.line_for_cann(cann)
    assert found.name == line and version == torch_npu


def test_a_cann_older_than_every_torch_npu_has_no_line():
    assert stacks.torch_npu_for_cann("8.0.RC3") == []
    assert stacks.line_for_cann("8.0.RC3") == (None, None)


def test_pair_problems_name_what_does_not_fit():
    assert stacks.pair_problem("2.4.0", "2.4.0.post2", "8.0.0") is None
    assert stacks.pair_problem("2.13.0+cpu", "2.13.0", "9.1.0") is None
    assert stacks.pair_problem("2.13.0+cpu", "2.13.0", "8.0.0") == "torch_npu 2.13.0 needs CANN 9.1.0, this host has CANN 8.0.0"
    assert stacks.pair_problem("2.13.0", "2.4.0.post2", None) == \
        "torch_npu 2.4.0.post2 requires torch 2.4.0, but torch 2.13.0 is installed"
    assert stacks.pair_problem("2.6.0", "2.6.0.post5", "9.0.0") == "torch_npu 2.6.0.post5 needs CANN 8.5.0, this host has CANN 9.0.0"


def test_install_commands_follow_the_host():
    line = stacks.LINES[0]
    assert stacks.install_commands(line, "2.4.0.post2", "x86_64", (3, 11)) == [
        "pip install torch==2.4.0+cpu --index-url https://download.pytorch.org/whl/cpu",
        "pip install -r stacks/torch2.4/requirements.txt -c stacks/torch2.4/constraints.txt",
        "pip install --no-deps torch-npu==2.4.0.post2"]
    assert stacks.install_commands(line, "2.4.0.post2", "aarch64", (3, 11))[0] == "pip install torch==2.4.0"
    on_312 = stacks.install_commands(line, "2.4.0.post2", "aarch64", (3, 12))
    assert on_312[0] == "python3.11 -m venv .venv && . .venv/bin/activate"
    # PyPI's aarch64 torch is a CUDA build from 2.11 on (the current line): the CPU index there too
    current = stacks.LINES[-1]
    assert stacks.install_commands(current, "2.13.0", "aarch64", (3, 11))[0] == \
        f"pip install torch=={current.torch} --index-url https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("layout", ["toolkit", "cann-X.Y.Z"])
def test_the_cann_version_is_read_from_its_files(tmp_path, layout):
    root = fake_ascend_root(tmp_path, "8.5.0", layout, arch="aarch64")
    version, path = stacks.read_cann_version(root)
    assert version == "8.5.0" and path.name == "ascend_toolkit_install.info"
    assert stacks.read_driver_version(root) == "24.1.0"
    assert stacks.read_cann_version(tmp_path / "nothing") == (None, None)
    # what to source: the set_env.sh of the CANN that was found, in its own layout
    expected = root / ("ascend-toolkit" if layout == "toolkit" else "cann-8.5.0") / "set_env.sh"
    assert stacks.set_env_script(root, path) == expected
    assert stacks.set_env_script(root, None) == root / "ascend-toolkit" / "set_env.sh"


def dry_run(root: Path, device: str, *extra: str) -> tuple[int, dict]:
    env = {**os.environ, stacks.ASCEND_ROOT_ENV: str(root)}
    proc = subprocess.run([sys.executable, str(REPO / "check_accuracy_run_perf.py"), "--dry-run", "--json",
                           "--model", "random:tiny", "--device", device, *extra],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc.returncode, {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


def this_host_commands(cann: str) -> str:
    line, torch_npu = stacks.line_for_cann(cann)
    return " && ".join(stacks.install_commands(line, torch_npu, platform.machine(), sys.version_info[:2]))


@pytest.mark.parametrize("cann, torch_npu", [("8.0.0", "2.4.0.post2"), ("8.2.RC1", "2.6.0"), ("9.1.0", "2.13.0")])
def test_dry_run_advises_the_stack_for_the_hosts_cann(tmp_path, cann, torch_npu):
    import torch

    root = fake_ascend_root(tmp_path / "Ascend", cann)
    code, checks = dry_run(root, "npu")
    assert checks["cann toolkit"]["value"] == cann
    stack = checks["cann stack"]
    assert stack["status"] == "PASS" and f"torch_npu {torch_npu} (" in stack["value"]
    assert stack["value"].startswith(f"CANN {cann} fits torch_npu {', '.join(stacks.torch_npu_for_cann(cann))};")
    pair = checks["torch/torch_npu"]
    own_line = stacks.line_for_torch(torch.__version__)
    own_fit = [v for v in stacks.torch_npu_for_cann(cann) if stacks.release(v) == stacks.release(torch.__version__)]
    if own_line is not None and own_fit:  # this line runs there: only its torch_npu is missing
        assert pair["status"] == "WARN" and f"torch_npu {own_fit[0]} fits CANN {cann} (not installed)" in pair["value"]
        assert pair["fix"] == f"pip install {'--no-deps ' * own_line.torch_npu_no_deps}torch-npu=={own_fit[0]}"
    else:  # the installed torch cannot run on this CANN: the whole line for it, for this host
        assert pair["status"] == "FAIL" and f"no torch_npu for it fits CANN {cann}" in pair["value"]
        assert pair["fix"] == this_host_commands(cann) and f"torch-npu=={torch_npu}" in pair["fix"]
        assert code == 1
    if platform.machine() == "x86_64":
        assert "--index-url https://download.pytorch.org/whl/cpu" in checks["torch_npu"]["fix"] or \
            checks["torch_npu"]["fix"] == pair["fix"]


def test_dry_run_on_cpu_only_warns_about_the_npu_stack(tmp_path):
    root = fake_ascend_root(tmp_path / "Ascend", "8.0.RC3")
    code, checks = dry_run(root, "cpu")
    assert code == 0
    assert checks["cann stack"]["status"] == "WARN"
    assert checks["cann stack"]["value"] == "no torch_npu in Ascend's table fits CANN 8.0.RC3"
    assert checks["cann stack"]["fix"] == "install CANN 8.0.0 or newer"


# ------------------------------------------------------------------ the pinned files


def pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file's unconditional `==` pins, its `-r` includes too."""
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found.update(pins(path.parent / line[3:].strip()))
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)$", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return found


@pytest.mark.parametrize("line", stacks.LINES, ids=lambda line: line.name)
def test_every_line_pins_what_the_matrix_says(line):
    requirements, constraints = pins(REPO / line.requirements), pins(REPO / line.constraints)
    for found in (requirements, constraints):
        assert found["torch"] == line.torch and found["nemo-toolkit"] == line.nemo
    for name, version in requirements.items():
        assert constraints.get(name) == version, f"{line.constraints} pins {name} {constraints.get(name)}, not {version}"
    assert (REPO / line.folder / "requirements-npu.txt").is_file() or line.folder == "."


def test_the_oldest_line_serves_cann_8_0():
    assert stacks.line_for_cann("8.0.0")[0] is stacks.LINES[0]


def test_no_pin_conflicts_with_the_installed_nemo():
    """Every pin of the line this environment runs satisfies what the installed NeMo declares
    (e.g. NeMo 2.7 wants jiwer<4)."""
    import torch
    from packaging.requirements import Requirement

    line = stacks.line_for_torch(torch.__version__)
    if line is None:
        pytest.skip(f"torch {torch.__version__} is not a supported line")
    ours = pins(REPO / line.requirements)
    checked = 0
    for text in importlib.metadata.requires("nemo_toolkit") or []:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name not in ours or (requirement.marker and not requirement.marker.evaluate({"extra": "asr"})):
            continue
        checked += 1
        assert requirement.specifier.contains(ours[name], prereleases=True), \
            f"{line.requirements} pins {name}=={ours[name]}, NeMo {line.nemo} wants {requirement}"
    assert checked >= 3
