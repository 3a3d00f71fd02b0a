"""The device layer: the only module that touches `torch.npu` / `torch.cuda`.

It resolves `--device auto|cpu|npu[:N]|cuda[:N]`, imports torch_npu explicitly (entry scripts
set TORCH_DEVICE_BACKEND_AUTOLOAD=0 so that a broken torch_npu cannot break `import torch`),
turns every way that import can fail into a diagnosis the user can act on, and provides
synchronize / memory / name helpers for whichever device was chosen.

An `npu` backend that is already registered (torch_npu imported by the caller, or a test
emulator) is used as is.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import resource
from dataclasses import dataclass
from typing import Optional

from ..errors import SetupError

DEVICE_CHOICES = "auto, cpu, npu, npu:N, cuda, cuda:N"
CANN_SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
_DEVICE_RE = re.compile(r"^(auto|cpu|npu|cuda)(?::(\d+))?$")


class DeviceError(SetupError):
    """A device was asked for that this machine cannot provide."""


@dataclass(frozen=True)
class NpuStatus:
    usable: bool
    diagnosis: str  # why not usable, or what was found
    torch_npu_version: Optional[str] = None
    device_count: int = 0


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # a torch device string: "cpu", "cuda:0", "npu:0"
    reason: str  # why this device, in words
    warning: Optional[str] = None  # set when `auto` fell back from an accelerator that is present but broken

    @property
    def type(self) -> str:
        return self.device.split(":")[0]

    @property
    def index(self) -> int:
        return device_index(self.device)


def device_index(device: str) -> int:
    """'npu:1' -> 1; 'npu' -> 0."""
    return int(device.split(":")[1]) if ":" in device else 0


def parse_device_spec(spec: str) -> tuple[str, Optional[int]]:
    match = _DEVICE_RE.match(spec.strip().lower())
    if not match:
        raise DeviceError(f"--device {spec!r}: not one of {DEVICE_CHOICES}")
    kind, index = match.groups()
    if kind in ("auto", "cpu") and index is not None:
        raise DeviceError(f"--device {spec!r}: '{kind}' takes no index")
    return kind, None if index is None else int(index)


# ---------------------------------------------------------------- NPU probing


def _npu_backend_registered() -> bool:
    import torch

    module = getattr(torch, "npu", None)
    return module is not None and hasattr(module, "is_available")


def _release(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0'; '2.1.0.post8' -> '2.1.0'."""
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version)
    return ".".join(g for g in match.groups() if g is not None) if match else version


def _error_chain_text(error: BaseException) -> str:
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return " <- ".join(parts)


def diagnose_torch_npu_import_error(error: BaseException) -> str:
    """Map a failed `import torch_npu` to the fix a user can apply."""
    text = _error_chain_text(error)
    missing_lib = re.search(r"(lib[\w.+-]*\.so[\w.]*): cannot open shared object file", text)
    if missing_lib or "libascend" in text or "libhccl" in text:
        lib = missing_lib.group(1) if missing_lib else "the CANN libraries"
        return (f"CANN runtime not found ({lib} cannot be loaded): install the CANN toolkit and run "
                f"'source {CANN_SET_ENV}' before starting")
    if "Two accelerators" in text:
        return ("CUDA and NPU both present: torch_npu refuses to load beside CUDA; hide the GPUs "
                "(CUDA_VISIBLE_DEVICES=) or use --device cuda")
    first_line = text.splitlines()[0] if text else type(error).__name__
    return f"import torch_npu failed: {first_line[:300]}"


def _cuda_is_available() -> bool:
    import torch

    try:
        return torch.cuda.is_available()
    except Exception:  # a broken CUDA install is "no CUDA" for our purposes
        return False


def probe_npu() -> NpuStatus:
    """Import torch_npu if needed and report whether an NPU can be used, and if not, why."""
    import torch

    version, how = None, "npu backend already registered"
    if not _npu_backend_registered():
        how = "torch_npu loaded"
        if importlib.util.find_spec("torch_npu") is None:
            return NpuStatus(False, "torch_npu is not installed (pip install -r requirements-npu.txt)")
        try:
            version = importlib.metadata.version("torch_npu")
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version and _release(version) != _release(torch.__version__):
            return NpuStatus(False, f"torch_npu {version} requires torch {_release(version)}, but torch "
                                    f"{torch.__version__} is installed: install matching versions "
                                    f"(see requirements-npu.txt)", version)
        if _cuda_is_available():
            return NpuStatus(False, "CUDA and NPU both present: torch_npu refuses to load beside CUDA; "
                                    "hide the GPUs (CUDA_VISIBLE_DEVICES=) or use --device cuda", version)
        try:
            import torch_npu  # noqa: F401  (registers torch.npu)
        except Exception as error:  # ImportError, OSError, RuntimeError from the C extension
            return NpuStatus(False, diagnose_torch_npu_import_error(error), version)
    try:
        count = int(torch.npu.device_count()) if torch.npu.is_available() else 0
    except Exception as error:
        return NpuStatus(False, f"torch.npu cannot query devices: {error}", version)
    if count == 0:
        visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
        hint = f"ASCEND_RT_VISIBLE_DEVICES={visible!r}" if visible is not None else "ASCEND_RT_VISIBLE_DEVICES unset"
        return NpuStatus(False, f"{how} but no NPU is visible ({hint}); check 'npu-smi info' "
                                "and the driver", version)
    return NpuStatus(True, f"{how}, {count} NPU(s) visible", version, count)


def npu_inventory(count: int) -> str:
    """'npu:0 <name> (SoC <n>), ...; current npu:<i>' for a usable NPU backend."""
    import torch

    soc = getattr(torch.npu, "get_soc_version", None)
    names = [f"npu:{i} {torch.npu.get_device_name(i)}" + (f" (SoC {soc()})" if callable(soc) else "")
             for i in range(count)]
    current = getattr(torch.npu, "current_device", None)
    return ", ".join(names) + (f"; current npu:{current()}" if callable(current) else "")


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if _cuda_is_available() else 0


# ---------------------------------------------------------------- resolution


def resolve_device(spec: str = "auto") -> DeviceChoice:
    """Turn a --device value into a usable device, or raise DeviceError with the diagnosis."""
    kind, index = parse_device_spec(spec)
    if kind == "cpu":
        return DeviceChoice("cpu", "requested")
    if kind == "npu":
        return _require_npu(index or 0)
    if kind == "cuda":
        return _require_cuda(index or 0)
    return _auto_device()


def _require_npu(index: int) -> DeviceChoice:
    status = probe_npu()
    if not status.usable:
        raise DeviceError(f"--device npu: {status.diagnosis}")
    if index >= status.device_count:
        raise DeviceError(f"--device npu:{index}: only {status.device_count} NPU(s) visible (npu:0..npu:"
                          f"{status.device_count - 1}); check ASCEND_RT_VISIBLE_DEVICES")
    return DeviceChoice(f"npu:{index}", f"requested; {status.diagnosis}")


def _require_cuda(index: int) -> DeviceChoice:
    import torch

    if not _cuda_is_available():
        raise DeviceError(f"--device cuda: CUDA is not available (torch {torch.__version__}, "
                          f"built with CUDA {torch.version.cuda or 'none'})")
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"--device cuda:{index}: only {count} CUDA device(s) visible")
    return DeviceChoice(f"cuda:{index}", "requested")


def _auto_device() -> DeviceChoice:
    status = probe_npu()
    if status.usable:
        return DeviceChoice("npu:0", f"auto: {status.diagnosis}")
    # torch_npu installed but unusable is worth a warning; not installed at all is the normal CPU/GPU case.
    if "not installed" in status.diagnosis:
        warning, npu_note = None, status.diagnosis
    else:
        warning, npu_note = f"NPU not usable, falling back: {status.diagnosis}", "not usable, see the warning"
    if _cuda_is_available():
        return DeviceChoice("cuda:0", f"auto: CUDA available; NPU: {npu_note}", warning)
    return DeviceChoice("cpu", f"auto: no accelerator (NPU: {npu_note}; CUDA: not available)", warning)


# ---------------------------------------------------------------- per-device helpers


def _accelerator(device: str):
    """The torch.npu / torch.cuda module for an accelerator device string, else None."""
    import torch

    kind = device.split(":")[0]
    return {"npu": getattr(torch, "npu", None), "cuda": torch.cuda}.get(kind)


def set_current_device(device: str) -> None:
    """Make `device` the current card of this process (torchrun ranks: before the process group)."""
    module = _accelerator(device)
    if module is not None:
        module.set_device(device_index(device))


def prepare_device(device: str, exact_fp32: bool = True) -> list[str]:
    """Select the device and apply its settings; returns the settings applied, in words."""
    module = _accelerator(device)
    if module is None:
        return []
    module.set_device(device_index(device))
    applied = []
    if device.startswith("npu"):
        if hasattr(module, "set_compile_mode"):
            # Binary kernels instead of online compilation: no multi-minute first calls.
            module.set_compile_mode(jit_compile=False)
            applied.append("jit_compile=False")
        conv = getattr(module, "conv", None)
        if exact_fp32 and conv is not None and hasattr(conv, "allow_hf32"):
            # Ascend runs fp32 convolutions in HF32 by default; exact fp32 comparisons need it off.
            conv.allow_hf32 = False
            applied.append("conv hf32 off")
    return applied


def _on_accelerator(device: str, method: str):
    """Call torch.npu's / torch.cuda's `method` for an accelerator device; nothing on the CPU."""
    module = _accelerator(device)
    return None if module is None else getattr(module, method)()


def synchronize(device: str) -> None:
    """Wait for queued device work, so that a clock read measures finished work."""
    _on_accelerator(device, "synchronize")


def device_name(device: str) -> str:
    module = _accelerator(device)
    if module is not None:
        return str(module.get_device_name(device_index(device)))
    return cpu_name()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# The flags that decide which CPU kernels run fast (bf16, int8): results record them, because the
# same model name ("Intel(R) Xeon(R) Processor") comes with and without AMX.
# The CPU flags of native bf16 matmuls; without either, bf16 is emulated and slower than fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_speed_flags() -> list[str]:
    flags = cpu_flags()
    return [flag for flag in SPEED_FLAGS if flag in flags]


def reset_peak_memory(device: str) -> None:
    _on_accelerator(device, "reset_peak_memory_stats")


def memory_bytes(device: str) -> dict:
    """Current and peak memory: device memory for npu/cuda, this process's RSS for cpu."""
    module = _accelerator(device)
    if module is not None:
        return {"kind": f"{device.split(':')[0]} allocated", "current": int(module.memory_allocated()),
                "peak": int(module.max_memory_allocated())}
    current = _current_rss() or 0
    # ru_maxrss is sampled by the kernel and can trail the current statm reading.
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, current)
    return {"kind": "host rss", "current": current, "peak": peak}


def _current_rss() -> Optional[int]:
    try:
        with open("/proc/self/statm", encoding="utf-8") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- every card of the host


def visible_cards() -> list[str]:
    """Every card this process sees: the NPUs (ASCEND_RT_VISIBLE_DEVICES honoured by the
    runtime), else the CUDA devices; none on a CPU-only host."""
    status = probe_npu()
    if status.usable:
        return [f"npu:{i}" for i in range(status.device_count)]
    return [f"cuda:{i}" for i in range(cuda_device_count())]


def probe_card(device: str) -> dict:
    """A card's name, free and total memory, and a tiny operation run on it (a 4x4 matmul
    checked against the CPU's), so a card that is listed but broken is found."""
    import time

    import torch

    module = _accelerator(device)
    entry: dict = {"device": device}
    try:
        module.set_device(device_index(device))
        entry["name"] = module.get_device_name(device_index(device))
        free, total = module.mem_get_info()
        entry.update(free_bytes=int(free), total_bytes=int(total))
        start = time.perf_counter()
        x = torch.arange(16, dtype=torch.float32).reshape(4, 4)
        on_card = (x.to(device) @ x.to(device)).sum().item()
        module.synchronize()
        entry["op_seconds"] = round(time.perf_counter() - start, 4)
        entry["op_ok"] = on_card == float((x @ x).sum())
        if not entry["op_ok"]:
            entry["error"] = f"4x4 matmul gave {on_card}, the CPU {float((x @ x).sum())}"
    except Exception as error:  # a broken card is a result here, not a crash
        entry["op_ok"] = False
        entry["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return entry
