"""Which software stacks an Ascend host can run, and how to install them: the one place that
knows the CANN <-> torch_npu <-> torch matrix and this toolkit's supported lines.

A host's CANN fixes which torch_npu builds it can load, a torch_npu build fixes torch exactly,
and torch fixes which NeMo the toolkit uses (one tested line per torch). Everything here is
data and pure functions of version strings: no torch import, no file reads except the CANN
version files under an Ascend root (`$PARAKEET_ASCEND_ROOT`, else /usr/local/Ascend).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DEFAULT_ASCEND_ROOT = Path("/usr/local/Ascend")
ASCEND_ROOT_ENV = "PARAKEET_ASCEND_ROOT"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The first torch whose aarch64 wheel on PyPI is a CUDA build (checked by resolving with uv).
AARCH64_PYPI_CUDA_FROM = "2.11"

# torch_npu release -> the CANN it was built for (Ascend/pytorch COMPATIBILITY.md). 2.13.0 is not
# in Ascend's table yet; it needs the newest CANN, taken here as 9.1.0.
TORCH_NPU_CANN: tuple[tuple[str, str], ...] = (
    ("2.1.0.post10", "8.0.0"), ("2.3.1.post4", "8.0.0"), ("2.4.0.post2", "8.0.0"),
    ("2.1.0.post12", "8.1.RC1"), ("2.3.1.post6", "8.1.RC1"), ("2.4.0.post4", "8.1.RC1"), ("2.5.1", "8.1.RC1"),
    ("2.1.0.post13", "8.2.RC1"), ("2.5.1.post1", "8.2.RC1"), ("2.6.0", "8.2.RC1"),
    ("2.1.0.post17", "8.3.RC1"), ("2.6.0.post3", "8.3.RC1"), ("2.7.1", "8.3.RC1"), ("2.8.0", "8.3.RC1"),
    ("2.6.0.post5", "8.5.0"), ("2.7.1.post2", "8.5.0"), ("2.8.0.post2", "8.5.0"), ("2.9.0", "8.5.0"),
    ("2.7.1.post4", "9.0.0"), ("2.8.0.post4", "9.0.0"), ("2.9.0.post2", "9.0.0"), ("2.10.0", "9.0.0"),
    ("2.7.1.post8", "9.1.0"), ("2.9.0.post6", "9.1.0"), ("2.10.0.post4", "9.1.0"), ("2.11.0", "9.1.0"),
    ("2.12.0", "9.1.0"), ("2.13.0", "9.1.0"),
)


@dataclass(frozen=True)
class Line:
    """One supported stack: torch + NeMo pinned in `folder` (requirements.txt, constraints.txt)."""

    name: str
    torch: str
    nemo: str
    folder: str  # relative to the repository root
    python: tuple[tuple[int, int], tuple[int, int]]  # oldest, newest Python with torch_npu wheels
    torch_npu_no_deps: bool  # torch_npu's metadata names a torch PyPI lacks (e.g. torch==2.4.0+cpu)
    note: str = ""

    @property
    def requirements(self) -> str:
        return f"{self.folder}/requirements.txt" if self.folder != "." else "requirements.txt"

    @property
    def host_requirements(self) -> str:
        """What the toolkit needs on top of an installed torch (a vendor image's): no torch pin."""
        return f"{self.folder}/requirements-host.txt" if self.folder != "." else "requirements-host.txt"

    @property
    def constraints(self) -> str:
        return f"{self.folder}/constraints.txt" if self.folder != "." else "constraints.txt"


# Oldest first. CI tests the first and the last on every run.
LINES: tuple[Line, ...] = (
    Line("torch2.4", "2.4.0", "2.2.1", "stacks/torch2.4", ((3, 10), (3, 11)), True,
         "CANN 8.0-8.1; numpy<2 (NeMo 2.2 reads files through np.sctypes)"),
    Line("torch2.6", "2.6.0", "2.7.3", "stacks/torch2.6", ((3, 10), (3, 11)), True, "CANN 8.2-8.5; jiwer<4"),
    Line("current", "2.13.0", "3.0.0", ".", ((3, 10), (3, 12)), False, "CANN 9.1 or newer"),
)


def release(version: str) -> str:
    """'2.4.0.post2' -> '2.4.0'; '2.13.0+cpu' -> '2.13.0'."""
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    return ".".join(g for g in match.groups() if g is not None) if match else version


def _post(version: str) -> int:
    match = re.search(r"\.post(\d+)", version)
    return int(match.group(1)) if match else 0


def _release_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release(version).split("."))


def cann_key(version: str) -> tuple[int, int, int, int]:
    """Orderable CANN version: 8.0.RC3 < 8.0.0 < 8.1.RC1 < 8.1.0 < 8.2.RC1.alpha003 ~ 8.2.RC1."""
    match = re.match(r"^\s*(\d+)\.(\d+)\.(?:(RC)?(\d+))", version, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a CANN version: {version!r}")
    major, minor, rc, number = match.groups()
    return int(major), int(minor), 0 if rc else 1, int(number)


def torch_npu_cann(torch_npu: str) -> Optional[str]:
    """The CANN a torch_npu release was built for, None if the table does not know it."""
    wanted = torch_npu.split("+")[0]
    for version, cann in TORCH_NPU_CANN:
        if version == wanted:
            return cann
    return None


def fits(torch_npu: str, cann: str) -> bool:
    """A torch_npu fits a CANN when it was built for that CANN or an older one of the same major
    version (Ascend documents no torch_npu across CANN major versions)."""
    needed = torch_npu_cann(torch_npu)
    if needed is None:
        return False
    have, want = cann_key(cann), cann_key(needed)
    return have[0] == want[0] and want <= have


def torch_npu_for_cann(cann: str) -> list[str]:
    """The newest fitting torch_npu of each torch release, newest torch first."""
    best: dict[str, str] = {}
    for version, _ in TORCH_NPU_CANN:
        if fits(version, cann) and (release(version) not in best or _post(version) > _post(best[release(version)])):
            best[release(version)] = version
    return [best[key] for key in sorted(best, key=_release_key, reverse=True)]


def line_for_torch(torch_version: str) -> Optional[Line]:
    for line in LINES:
        if release(line.torch) == release(torch_version):
            return line
    return None


def line_for_cann(cann: str) -> tuple[Optional[Line], Optional[str]]:
    """The newest supported line with a torch_npu that fits `cann`, and that torch_npu."""
    fitting = torch_npu_for_cann(cann)
    for line in reversed(LINES):
        for version in fitting:
            if release(version) == release(line.torch):
                return line, version
    return None, None


def pair_problem(torch_version: str, torch_npu: str, cann: Optional[str]) -> Optional[str]:
    """Why the installed torch / torch_npu pair cannot run on this CANN, or None if it can."""
    if release(torch_npu) != release(torch_version):
        return f"torch_npu {torch_npu} requires torch {release(torch_npu)}, but torch {torch_version} is installed"
    if cann is None:
        return None
    needed = torch_npu_cann(torch_npu)
    if needed is None:
        return (f"torch_npu {torch_npu} is not in the CANN compatibility table; torch_npu that fit CANN {cann}: "
                f"{', '.join(torch_npu_for_cann(cann)) or 'none'}")
    if not fits(torch_npu, cann):
        return f"torch_npu {torch_npu} needs CANN {needed}, this host has CANN {cann}"
    return None


def install_commands(line: Line, torch_npu: Optional[str], machine: str, python: tuple[int, int]) -> list[str]:
    """The pip commands that install `line` (and `torch_npu`) on a host with this architecture
    and Python, as Ascend documents it: torch's CPU build (on x86_64 from PyTorch's CPU index; on
    aarch64 PyPI's torch is the CPU build up to 2.10, a CUDA build from 2.11, so the CPU index
    there too), then the line's pins, then torch_npu."""
    commands = []
    oldest, newest = line.python
    if not oldest <= tuple(python[:2]) <= newest:
        wanted = f"{newest[0]}.{newest[1]}"
        # torch_npu for this torch has wheels for Python oldest..newest only: a venv of the newest
        commands.append(f"python{wanted} -m venv .venv && . .venv/bin/activate")
    if machine in ("x86_64", "amd64", "AMD64"):
        commands.append(f"pip install torch=={line.torch}+cpu --index-url {TORCH_CPU_INDEX}")
    elif _release_key(line.torch) >= _release_key(AARCH64_PYPI_CUDA_FROM):
        # PyPI's aarch64 torch 2.11+ brings 15 nvidia-* packages (3 GB), one of which pip check
        # rejects (tagged manylinux2014_sbsa); `==` without +cpu matches the CPU index's naming
        commands.append(f"pip install torch=={line.torch} --index-url {TORCH_CPU_INDEX}")
    else:
        commands.append(f"pip install torch=={line.torch}")
    commands.append(f"pip install -r {line.requirements} -c {line.constraints}")
    if torch_npu:
        commands.append(f"pip install {'--no-deps ' if line.torch_npu_no_deps else ''}torch-npu=={torch_npu}")
    return commands


# ---------------------------------------------------------------- reading the host's CANN


def ascend_root() -> Path:
    return Path(os.environ.get(ASCEND_ROOT_ENV) or DEFAULT_ASCEND_ROOT)


def _value(path: Path, keys: tuple[str, ...]) -> Optional[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for key in keys:
        for line in lines:
            name, sep, value = line.partition("=")
            if sep and name.strip().lower() == key:
                value = value.strip().strip('"').strip("'").strip("[]")
                if value:
                    return value
    return None


def cann_version_files(root: Path) -> list[Path]:
    """Where CANN records its version, newest layout last: ascend-toolkit/latest (8.x) and
    cann[-X.Y.Z] (8.5 on)."""
    toolkit = root / "ascend-toolkit" / "latest"
    candidates = [*sorted(toolkit.glob("*/ascend_toolkit_install.info")), *sorted(toolkit.glob("*_install.info")),
                  toolkit / "version.cfg"]
    for cann in sorted(root.glob("cann*")):
        candidates += sorted(cann.glob("*/ascend_toolkit_install.info")) + sorted(cann.glob("*_install.info"))
    return candidates


def read_cann_version(root: Optional[Path] = None) -> tuple[Optional[str], Optional[Path]]:
    """The CANN toolkit version under the Ascend root and the file it came from."""
    root = ascend_root() if root is None else root
    for path in cann_version_files(root):
        value = _value(path, ("version", "runtime_running_version", "toolkit_running_version"))
        if value:
            try:
                cann_key(value)
            except ValueError:
                continue
            return value, path
    return None, None


def set_env_script(root: Path, version_file: Optional[Path]) -> Path:
    """The set_env.sh of the CANN whose version file is `version_file`: ascend-toolkit/set_env.sh
    up to 8.3, cann[-X.Y.Z]/set_env.sh in 8.5's layout."""
    if version_file is not None and version_file.parent.parent.name.startswith("cann"):
        return version_file.parent.parent / "set_env.sh"
    if version_file is not None and version_file.parent.name.startswith("cann"):
        return version_file.parent / "set_env.sh"
    return root / "ascend-toolkit" / "set_env.sh"


def read_driver_version(root: Optional[Path] = None) -> Optional[str]:
    root = ascend_root() if root is None else root
    return _value(root / "driver" / "version.info", ("version", "package_version"))
