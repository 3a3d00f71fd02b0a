"""The environment dry-run: is this machine ready to run the model? Seconds, no model load.

Each check gives PASS / WARN / FAIL, the value found and, when not PASS, the fix in one line:
the findings. Only FAIL makes the dry-run fail; WARN is something the user should know about.
The verdict says where `--device auto` would run when an installed NPU stack cannot be used.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..device import stacks
from ..device.accelerators import (
    cuda_device_count,
    npu_inventory,
    parse_device_spec,
    probe_card,
    probe_npu,
    visible_cards,
)
from ..device.environment import package_version
from ..errors import ToolkitError
from ..model import random_models
from ..model.loading import ModelSource, check_model_source, resolve_model_source
from ..model.nemo_archive import DAMAGED_FIX, DamagedModelError, read_nemo_config, verify_nemo_archive

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
AUTO_DEVICE = "device auto"  # the check that says where --device auto would run
# Bytes of RAM per parameter while loading: fp32 weights plus NeMo's transient copies.
LOAD_BYTES_PER_PARAMETER = 8
PARAKEET_PARAMETERS = 617_800_000


@dataclass
class Check:
    name: str
    status: str
    value: str
    fix: Optional[str] = None


def _check(name: str, ok: bool, value: str, fix: str, warn_only: bool = False) -> Check:
    return Check(name, PASS if ok else (WARN if warn_only else FAIL), value, None if ok else fix)


def python_checks() -> list[Check]:
    import tarfile

    version = platform.python_version()
    checks = [_check("python", sys.version_info >= (3, 10), version, "use Python 3.10 or newer")]
    nemo = package_version("nemo_toolkit")
    if nemo and int(stacks.release(nemo).split(".")[0]) >= 3 and not hasattr(tarfile, "data_filter"):
        # NeMo 3.0 unpacks a .nemo with tarfile's filter argument (PEP 706: 3.11.4, 3.12)
        checks.append(Check("python tarfile", WARN, f"Python {version} has no tarfile data filter: NeMo {nemo}'s own "
                            "restore_from (--loader nemo) cannot unpack a .nemo here; the default loader can",
                            "use Python 3.11.4 or newer for --loader nemo"))
    return checks


def torch_checks(device_spec: str) -> list[Check]:
    """torch, torch_npu and the NPU itself, the host's CANN and which stack fits it, then CUDA
    (informational), and with --device auto where the run would go. A torch_npu that cannot be
    used fails the dry-run only when --device npu asks for it; with cpu or auto it is a warning
    (auto falls back to CUDA or the CPU, which the 'device auto' row says)."""
    import torch

    checks = [Check("torch", PASS, torch.__version__)]
    kind, _ = parse_device_spec(device_spec)
    npu_required = kind == "npu"
    status = probe_npu()
    version = status.torch_npu_version or package_version("torch_npu")
    no_device = "no NPU is visible" in status.diagnosis
    cann, cann_file = stacks.read_cann_version()
    advice = install_advice(torch.__version__, version, cann)
    if version is None and not status.usable:
        checks.append(_check("torch_npu", False, "not installed", advice or "pip install -r requirements-npu.txt "
                             "(and install CANN)", warn_only=not npu_required))
    elif not status.usable and not no_device:
        checks.append(Check("torch_npu", FAIL if npu_required else WARN,
                            f"{version or 'a torch_npu'} is installed but cannot "
                            f"{'load' if _missing_cann(status.diagnosis) else 'be used'}: {_problem_of(status.diagnosis)}",
                            _torch_npu_fix(status.diagnosis, version, cann, cann_file)))
    else:
        checks.append(Check("torch_npu", PASS, f"{version or 'registered'} (importable)"))
        checks.append(_check("npu devices", status.usable, f"{status.device_count}: {npu_inventory(status.device_count)}"
                             if status.usable else status.diagnosis, _fix_of(status.diagnosis),
                             warn_only=not npu_required))
    relevant = status.usable or version is not None or npu_required
    checks.extend(ascend_install_checks(relevant, cann, cann_file))
    checks.extend(stack_checks(torch.__version__, version, cann, npu_required, relevant, advice))
    cuda = cuda_device_count()
    checks.append(Check("cuda", PASS, f"available, {cuda} device(s)" if cuda else "not available (informational)"))
    if kind == "cuda" and not cuda:
        checks[-1] = Check("cuda", FAIL, "not available", "use --device auto or cpu, or install a CUDA build of torch")
    if kind == "auto":
        checks.append(auto_device_check(status, version is not None, cuda, checks))
    return checks


def auto_device_check(status, torch_npu_installed: bool, cuda: int, checks: list[Check]) -> Check:
    """Where --device auto would run (the rule of accelerators.resolve_device, from the probe
    above). A torch_npu that is installed but cannot be used is a warning that names the device
    the run falls back to: the verdict repeats it (see readiness)."""
    if status.usable:
        return Check(AUTO_DEVICE, PASS, f"npu:0 ({status.diagnosis})")
    fallback = "cuda:0" if cuda else "cpu"
    if not torch_npu_installed and "no NPU is visible" not in status.diagnosis:
        return Check(AUTO_DEVICE, PASS, f"{fallback} (no NPU: torch_npu not installed)")
    npu_row = next(c for c in checks if c.name in ("torch_npu", "npu devices") and c.status != PASS)
    return Check(AUTO_DEVICE, WARN, f"{'CUDA' if cuda else 'CPU'} only: the NPU cannot be used: "
                 f"{_problem_of(status.diagnosis)}", npu_row.fix)


def _problem_of(diagnosis: str) -> str:
    """A probe's diagnosis, without its advice where the fix says it better: 'CANN runtime not
    found (libhccl.so cannot be loaded)'."""
    return diagnosis.split(": ", 1)[0] if _missing_cann(diagnosis) else diagnosis


def _missing_cann(diagnosis: str) -> bool:
    return diagnosis.startswith("CANN runtime not found")


def _torch_npu_fix(diagnosis: str, version: Optional[str], cann: Optional[str], cann_file: Optional[Path]) -> str:
    """For a torch_npu that cannot load for want of CANN: source the installed CANN's set_env.sh,
    or install the CANN this torch_npu was built for; otherwise the probe's own advice."""
    if not _missing_cann(diagnosis):
        return _fix_of(diagnosis)
    source = f"source {stacks.set_env_script(stacks.ascend_root(), cann_file)}"
    if cann is not None:
        return f"CANN {cann} is installed but not loaded: run '{source}' in this shell before starting"
    needed = stacks.torch_npu_cann(version) if version else None
    wanted = f"CANN {needed} (the line torch_npu {version} is built for)" if needed else \
        "the CANN of torch_npu's line (requirements-npu.txt)"
    return f"install {wanted}, then run '{source}' before starting; where CANN is installed, only the source is missing"


def card_checks(script: str = "inference.py --audio AUDIO --output OUT.json") -> list[Check]:
    """Every visible card with its name, free memory and a tiny operation run on it; whether
    HCCL (torch_npu's collective backend) is there; the torchrun command that uses every card."""
    from ..ranks.world import backend_for

    cards = visible_cards()
    if not cards:
        return [Check("cards", PASS, "none visible: one CPU process (informational)")]
    visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES" if cards[0].startswith("npu") else "CUDA_VISIBLE_DEVICES")
    checks = [Check("cards", PASS, f"{len(cards)} visible" + (f" (visible devices {visible!r})" if visible else ""))]
    for entry in (probe_card(card) for card in cards):
        if entry["op_ok"]:
            value = (f"{entry['name']}, {entry['free_bytes'] / 2**30:.1f} of {entry['total_bytes'] / 2**30:.1f} GiB "
                     f"free, 4x4 matmul ok ({entry['op_seconds'] * 1000:.1f} ms)")
            checks.append(Check(f"card {entry['device']}", PASS, value))
        else:
            checks.append(Check(f"card {entry['device']}", FAIL, entry.get("error", "failed"),
                                "check 'npu-smi info' for this card, or leave it out with ASCEND_RT_VISIBLE_DEVICES"))
    backend = backend_for(cards[0])
    if cards[0].startswith("npu"):
        checks.append(_check("hccl", backend == "hccl", "available (torch_npu registers it)" if backend == "hccl"
                             else "not registered: ranks would coordinate over gloo",
                             "install torch_npu with CANN's HCCL (multi-card runs still work over gloo)", warn_only=True))
    else:
        checks.append(Check("collectives", PASS, backend))
    checks.append(Check("torchrun", PASS, f"torchrun --nproc-per-node {len(cards)} --max-restarts 3 {script}"))
    return checks


def install_advice(torch_version: str, torch_npu: Optional[str], cann: Optional[str]) -> Optional[str]:
    """The pip commands, for this host's architecture and Python, that install the supported
    line fitting its CANN (or, without CANN, the installed torch); None if nothing fits."""
    own = stacks.line_for_torch(torch_version)
    nemo = package_version("nemo_toolkit")
    own_installed = own is not None and nemo is not None and stacks.release(nemo) == own.nemo
    if cann is not None and own_installed and _fitting_for_torch(torch_version, cann):
        # the installed line has a torch_npu for this CANN: only that is missing or wrong
        version = _fitting_for_torch(torch_version, cann)[0]
        return f"pip install {'--no-deps ' if own.torch_npu_no_deps else ''}torch-npu=={version}"
    if cann is not None:
        line, npu = stacks.line_for_cann(cann)
    else:
        line = stacks.line_for_torch(torch_npu or torch_version)
        npu = _newest_torch_npu(line)
    if line is None:
        return None
    commands = stacks.install_commands(line, npu, platform.machine(), sys.version_info[:2])
    if line is own and own_installed and npu:
        commands = commands[-1:]  # the line is installed already: only torch_npu is missing or wrong
    return " && ".join(commands)


def _fitting_for_torch(torch_version: str, cann: str) -> list[str]:
    """The torch_npu builds for the installed torch that fit this CANN, newest first."""
    return [v for v in stacks.torch_npu_for_cann(cann) if stacks.release(v) == stacks.release(torch_version)]


def _newest_torch_npu(line) -> Optional[str]:
    versions = [v for v, _ in stacks.TORCH_NPU_CANN if line and stacks.release(v) == stacks.release(line.torch)]
    return versions[-1] if versions else None


def stack_checks(torch_version: str, torch_npu: Optional[str], cann: Optional[str], npu_required: bool,
                 relevant: bool, advice: Optional[str]) -> list[Check]:
    """Which torch_npu fit this host's CANN, whether the installed torch / torch_npu pair fits both,
    and whether torch + NeMo is one of the tested lines."""
    checks = []
    if cann is not None:
        fitting = stacks.torch_npu_for_cann(cann)
        line, npu = stacks.line_for_cann(cann)
        if not fitting:
            checks.append(_check("cann stack", False, f"no torch_npu in Ascend's table fits CANN {cann}",
                                 "install CANN 8.0.0 or newer", warn_only=not npu_required))
        else:
            tested = (f"; tested line: torch {line.torch} + NeMo {line.nemo} + torch_npu {npu} ({line.requirements})"
                      if line else "; no tested line of this toolkit uses them")
            checks.append(_check("cann stack", line is not None, f"CANN {cann} fits torch_npu {', '.join(fitting)}"
                                 + tested, "supported lines: " + _lines_text(), warn_only=True))
    if torch_npu is not None:
        problem = stacks.pair_problem(torch_version, torch_npu, cann)
        value = problem or (f"torch {torch_version} + torch_npu {torch_npu}" +
                            (f" fit CANN {cann}" if cann else " match (CANN not found, not checked against it)"))
        checks.append(Check("torch/torch_npu", PASS if problem is None else (FAIL if npu_required else WARN), value,
                            None if problem is None else (advice or "supported lines: " + _lines_text())))
    elif cann is not None:
        fitting = _fitting_for_torch(torch_version, cann)
        value = (f"torch {torch_version}: torch_npu {fitting[0]} fits CANN {cann} (not installed)" if fitting else
                 f"torch {torch_version}: no torch_npu for it fits CANN {cann}")
        checks.append(Check("torch/torch_npu", WARN if fitting or not npu_required else FAIL, value,
                            advice or "supported lines: " + _lines_text()))
    nemo = package_version("nemo_toolkit")
    line = stacks.line_for_torch(torch_version)
    tested = line is not None and nemo is not None and stacks.release(nemo) == stacks.release(line.nemo)
    checks.append(_check("toolkit line", tested, f"torch {stacks.release(torch_version)} + NeMo {nemo or 'none'}"
                         + (f" (line {line.name})" if tested else " is not a tested line"),
                         "tested lines: " + _lines_text(), warn_only=True))
    return checks


def _lines_text() -> str:
    return "; ".join(f"torch {line.torch} + NeMo {line.nemo} ({line.note})" for line in stacks.LINES)


def _fix_of(diagnosis: str) -> str:
    return diagnosis.split(": ", 1)[-1] if ": " in diagnosis else diagnosis


def ascend_install_checks(relevant: bool, cann: Optional[str] = None, cann_file: Optional[Path] = None) -> list[Check]:
    """CANN toolkit and driver versions, read from their usual files under the Ascend root
    ($PARAKEET_ASCEND_ROOT, else /usr/local/Ascend). Without torch_npu they are informational:
    a CPU or CUDA host needs neither."""
    root = stacks.ascend_root()
    driver = stacks.read_driver_version(root)
    sourced = bool(os.environ.get("ASCEND_TOOLKIT_HOME") or os.environ.get("ASCEND_HOME_PATH"))
    set_env = f"run 'source {stacks.set_env_script(root, cann_file)}'"
    found = [
        ("cann toolkit", cann is not None, cann or f"not found under {root}", "install CANN, then " + set_env),
        ("cann environment", sourced, "sourced" if sourced else "set_env.sh not sourced", set_env),
        ("ascend driver", driver is not None, driver or f"not found ({root}/driver/version.info)",
         "install the Ascend driver and firmware ('npu-smi info' must list the cards)"),
    ]
    if not relevant:
        return [Check(name, PASS, f"{value} (only needed for NPUs)") for name, _, value, _ in found]
    return [_check(name, ok, value, fix, warn_only=True) for name, ok, value, fix in found]


REPO = Path(__file__).resolve().parents[2]
# Pins whose other versions break a line, not only differ from its tests: NeMo is written for one
# torch (a NeMo too new wants a newer torch, one too old lacks what the toolkit calls), and numpy 2
# breaks NeMo 2.2's file reading (np.sctypes) and torch 2.4's numpy bridge.
BINDING_PINS = ("nemo_toolkit", "numpy")


def pinned_requirements(path: Path) -> dict[str, str]:
    """name -> version of the `name==version` lines of a requirements file whose environment
    markers hold here (other lines, -r includes and comments left out)."""
    from packaging.markers import Marker
    from packaging.requirements import InvalidRequirement, Requirement

    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact and (requirement.marker is None or Marker(str(requirement.marker)).evaluate()):
            pins[requirement.name] = exact[0]
    return pins


def host_package_checks(torch_version: Optional[str]) -> list[Check]:
    """On top of the installed torch (a vendor image's, say): which of its line's requirements are
    missing or at a version that breaks the line, with the command that installs them without
    touching torch (its line's requirements-host.txt under its constraints)."""
    line = stacks.line_for_torch(torch_version) if torch_version else None
    host_file = REPO / line.host_requirements if line else None
    if host_file is None or not host_file.is_file():
        return []  # no tested line for this torch: the "toolkit line" check says so
    missing, conflicts = [], []
    for name, wanted in pinned_requirements(host_file).items():
        have = package_version(name)
        if have is None:
            missing.append(f"{name}=={wanted}")
        elif name.replace("-", "_") in BINDING_PINS and stacks.release(have).split(".")[:2] != wanted.split(".")[:2]:
            conflicts.append(f"{name} {have} (line {line.name} needs {wanted})")
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + \
               ([f"conflicts with torch {torch_version}: {'; '.join(conflicts)}"] if conflicts else [])
    fix = f"pip install -r {line.host_requirements} -c {line.constraints}  (leaves torch {torch_version} as it is)"
    return [_check(f"packages for torch {stacks.release(torch_version)}", not problems,
                   "; ".join(problems) or f"line {line.name}: every package of {line.host_requirements} present",
                   fix, warn_only=not conflicts and not any(m.startswith("nemo") for m in missing))]


def library_checks() -> list[Check]:
    checks = host_package_checks(package_version("torch"))
    nemo = package_version("nemo_toolkit")
    asr = nemo is not None and importlib.util.find_spec("nemo.collections.asr") is not None
    checks.append(_check("nemo_toolkit[asr]", asr, nemo or "not installed", "pip install -r requirements.txt"))
    for name, module, required in (("soundfile", "soundfile", True), ("librosa", "librosa", True),
                                   ("jiwer", "jiwer", True), ("sentencepiece", "sentencepiece", True)):
        version = package_version(name)
        ok = version is not None and importlib.util.find_spec(module) is not None
        checks.append(_check(name, ok, version or "not installed", "pip install -r requirements.txt",
                             warn_only=not required))
    return checks


def model_checks(spec: str) -> tuple[list[Check], Optional[int]]:
    """Checks of --model, and the bytes on disk (None if unknown)."""
    try:
        source = resolve_model_source(spec)
    except DamagedModelError as error:
        return [_damaged(error)], None
    except ToolkitError as error:
        return [Check("model", FAIL, str(error).replace(f"--model {spec}: ", ""), "pass --model with a "
                      "parakeet-tdt-0.6b-v2.nemo file, an extracted folder, demo or random:parakeet")], None
    if source.kind == "random":
        cached = random_models.random_model_path(spec)
        state = "cached" if cached.is_file() else "built on first use"
        return [Check("model", PASS, f"{spec}: EncDecRNNTBPEModel (tdt), {state}; {source.note}")], \
            (cached.stat().st_size if cached.is_file() else None)
    if source.kind == "pretrained":
        # where it would come from (hub mirror, ModelScope, cache), reachable, its size, room on disk
        found = check_model_source(spec)
        return [_check("model", found.ok, found.message,
                       "set HF_ENDPOINT to a reachable mirror, use modelscope:ORG/NAME, or copy the .nemo here and "
                       "pass --model PATH (docs/inference.md, Models without the hub)")], found.size
    return _local_model_checks(source)


def _local_model_checks(source: ModelSource) -> tuple[list[Check], Optional[int]]:
    """The model file read to its end: tar intact, config readable, weights matching their checksums."""
    size = (sum(f.stat().st_size for f in Path(source.path).rglob("*") if f.is_file())
            if source.kind == "extracted_dir" else os.path.getsize(source.path))
    try:
        verify_nemo_archive(source.path)
    except DamagedModelError as error:
        return [_damaged(error)], size
    try:
        config = read_nemo_config(source.path)
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        return [Check("model", FAIL, f"{source.path}: model_config.yaml unreadable ({first_line})",
                      DAMAGED_FIX)], size
    target = str(config.get("target", "?")).rsplit(".", 1)[-1]
    decoding = config.get("decoding") or {}
    decoder = decoding.get("model_type") or (config.get("loss") or {}).get("loss_name") or "rnnt"
    value = f"{source.path}: {target} ({decoder}), {size / 2**30:.2f} GiB" + (f"; {source.note}" if source.note else "")
    ok = "RNNT" in target.upper() or "TRANSDUCER" in target.upper() or "HYBRID" in target.upper()
    return [_check("model", ok, value, "this toolkit runs NeMo RNNT/TDT models (EncDecRNNTBPEModel)",
                   warn_only=True)], size


def _damaged(error: DamagedModelError) -> Check:
    return Check("model", FAIL, f"{error.path}: damaged .nemo ({error.detail})", error.fix)


def audio_checks(paths: list[str], input_options=None) -> list[Check]:
    import io

    import soundfile

    from ..inputs.audio import SAMPLE_RATE, check_audio_header
    from ..inputs.sources import InputOptions, collect_inputs

    checks = []
    for item in collect_inputs(paths, input_options or InputOptions()):
        name = f"audio {item.path}"
        if item.error:
            checks.append(Check(name, FAIL, item.error, "pass existing audio files, folders or manifests"))
            continue
        try:
            if item.embedded is not None:  # audio bytes inside a dataset
                info = soundfile.info(io.BytesIO(item.embedded.fetch()))
            else:
                check_audio_header(item.path)
                info = soundfile.info(item.path)
        except Exception as error:
            checks.append(Check(name, FAIL, str(error), "convert it to wav/flac (e.g. with sox or ffmpeg)"))
            continue
        value = f"{info.duration:.2f} s, {info.samplerate} Hz, {info.channels} ch, {info.subtype}"
        converted = info.samplerate != SAMPLE_RATE or info.channels != 1
        checks.append(_check(name, not converted, value, "will be converted to 16 kHz mono on load",
                             warn_only=True))
    return checks


def resource_checks(model_bytes: Optional[int]) -> list[Check]:
    needed = model_bytes or PARAKEET_PARAMETERS * 4
    temp = tempfile.gettempdir()
    free = shutil.disk_usage(temp).free
    available = _mem_available()
    ram_needed = needed * LOAD_BYTES_PER_PARAMETER // 4
    return [
        _check("disk space", free > needed, f"{free / 2**30:.1f} GiB free in {temp}, NeMo extracts "
               f"{needed / 2**30:.2f} GiB there", "free disk space or set TMPDIR to a larger disk"),
        _check("memory", available is None or available > ram_needed,
               f"{(available or 0) / 2**30:.1f} GiB available, about {ram_needed / 2**30:.1f} GiB needed to load",
               "close other programs or use a machine with more RAM", warn_only=available is None),
    ]


def _mem_available() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_checks(model_spec: str, audio_paths: list[str], device_spec: str = "auto", input_options=None) -> list[Check]:
    checks = python_checks() + torch_checks(device_spec) + card_checks() + library_checks()
    model, model_bytes = model_checks(model_spec)
    checks += model + (audio_checks(audio_paths, input_options) if audio_paths else []) + resource_checks(model_bytes)
    return checks


def checks_passed(checks: list[Check]) -> bool:
    return all(c.status != FAIL for c in checks)


def readiness(checks: list[Check]) -> str:
    """The verdict: NOT READY on any FAIL; READY, with the device --device auto falls back to when
    an installed NPU stack cannot be used ('READY (CPU only: the NPU cannot be used: ...)')."""
    if not checks_passed(checks):
        return "NOT READY"
    fallback = next((c for c in checks if c.name == AUTO_DEVICE and c.status == WARN), None)
    return f"READY ({fallback.value})" if fallback else "READY"


def checks_document(checks: list[Check]) -> dict:
    """The checks, their counts and verdict, and the findings: every WARN and FAIL with its fix."""
    counts = {status: sum(c.status == status for c in checks) for status in (PASS, WARN, FAIL)}
    return {"checks": [asdict(c) for c in checks], "counts": counts, "passed": checks_passed(checks),
            "verdict": readiness(checks), "findings": [asdict(c) for c in checks if c.status != PASS]}
