"""An emulated Ascend device named `npu`, for tests only: the product never imports this.

Installing it registers PyTorch's PrivateUse1 backend under the name "npu" (a private,
experimental PyTorch API) with a `torch.npu` module offering the torch_npu calls our device
layer uses. Tensors on `npu:0` are wrapper tensors holding a CPU tensor; every aten op on them
runs on the CPU and is counted: ops dispatched, host syncs (item(), device-to-host copies,
data-dependent shapes) and host-to-device copies. In strict mode, an op that mixes npu and
CPU tensors raises, as a real accelerator does (0-dim CPU scalars and CPU index tensors are
allowed, as on CUDA).

It also has graphs (`torch.npu.NPUGraph`, `torch.npu.graph`), strictly: a capture records
every device op with the tensors it read and wrote, and raises on what a real capture cannot
hold (a host synchronization, a host-device copy, a host tensor fed to a device op, a
data-dependent shape); a replay re-runs the recorded ops on the recorded tensors, whatever the
Python code would do now, and counts as one launch.

What it proves: device placement, dispatch through NeMo's non-CUDA code paths, host-sync
counts, that code is capturable. What it cannot: kernels, precision, speed, or the operator
fallbacks of real CANN.

Run a script under it (installing is process-wide, so use a subprocess):
    python -m tests.emulated_npu inference.py --device npu:0 --audio clip.wav
"""

from __future__ import annotations

import copy
import os
import runpy
import sys
import types
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._pytree import tree_map

DEVICE_NAME = "Ascend910B4 (emulated)"
# How many cards: $EMULATED_NPU_DEVICES (default 2), or as many as ASCEND_RT_VISIBLE_DEVICES lists,
# as torch_npu counts them. A tensor lives on the card current when it was made (set_device), or
# on the one a .to("npu:N") / factory names.
_DEVICES = {"count": None, "current": 0}


def device_count() -> int:
    if _DEVICES["count"] is None:
        import os

        visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
        count = int(os.environ.get("EMULATED_NPU_DEVICES", "2"))
        _DEVICES["count"] = len([v for v in visible.split(",") if v.strip()]) if visible is not None else count
    return _DEVICES["count"]


# A broken card for health checks: matrix products of more than 1024 elements on the cards
# $EMULATED_NPU_FAULTY_CARDS lists (comma separated indices) come out negated, so the dry-run's 4x4
# product passes there and only the transcripts disagree with the CPU's.
_FAULTY_OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear")


def _faulty(args) -> bool:
    import os

    listed = os.environ.get("EMULATED_NPU_FAULTY_CARDS", "")
    if not listed:
        return False
    card = next((a.device.index for a in args if isinstance(a, NpuTensor)), None)
    return card is not None and str(card) in [v.strip() for v in listed.split(",")]


def _index_of(device) -> int:
    """The card a device argument names; the current one for a bare "npu"."""
    if device is None:
        return _DEVICES["current"]
    index = torch.device(device).index
    return _DEVICES["current"] if index is None else index
TOTAL_MEMORY = 32 * 2**30
# Public PrivateUse1 registration (torch 2.1 on) plus wrapper subclasses: what every torch needs.
# Newer torch (2.13; not 2.4 or 2.6) also has a private helper that registers a Python device guard
# and hooks on top of these; without it, C++ that takes a device guard (indexing, `.to("npu")`
# without an index, `torch.tensor(data, device=...)`) fails with "PyTorch is not linked with
# support for npu devices", so a 20-line C++ guard is compiled (g++, torch's headers) and loaded.
REQUIRED_API = ("torch.utils.rename_privateuse1_backend", "torch.utils.generate_methods_for_privateuse1_backend",
                "torch._register_device_module", "torch.Tensor._make_wrapper_subclass")
FULL_SETUP_API = "torch.utils.backend_registration._setup_privateuseone_for_python_backend"

aten = torch.ops.aten


def _lookup(dotted: str):
    value = sys.modules["torch"]
    for part in dotted.split(".")[1:]:
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def missing_api() -> str | None:
    """What this emulator needs that this torch (or machine) lacks, or None."""
    import shutil

    import torch.utils.backend_registration  # noqa: F401  (loads the submodule the names live in)

    for name in REQUIRED_API:
        if _lookup(name) is None:
            return name
    if _lookup(FULL_SETUP_API) is None:
        if shutil.which(_CXX) is None:
            return f"{FULL_SETUP_API} or a C++ compiler ({_CXX}) to build a PrivateUse1 device guard"
        if not (Path(torch.__file__).parent / "include" / "c10" / "core" / "impl" / "DeviceGuardImplInterface.h").is_file():
            return f"{FULL_SETUP_API} or torch's C++ headers (torch/include) to build a PrivateUse1 device guard"
    return None


_CXX = os.environ.get("CXX", "g++")
_GUARD_SOURCE = r"""
#include <c10/core/impl/DeviceGuardImplInterface.h>

namespace {
constexpr c10::DeviceType kNpu = c10::DeviceType::PrivateUse1;
thread_local c10::DeviceIndex current = 0;

struct EmulatedNpuGuard final : public c10::impl::DeviceGuardImplInterface {
  c10::DeviceType type() const override { return kNpu; }
  c10::Device exchangeDevice(c10::Device device) const override {
    c10::Device old(kNpu, current);
    current = device.index() < 0 ? 0 : device.index();
    return old;
  }
  c10::Device getDevice() const override { return c10::Device(kNpu, current); }
  void setDevice(c10::Device device) const override { current = device.index() < 0 ? 0 : device.index(); }
  void uncheckedSetDevice(c10::Device device) const noexcept override { current = device.index() < 0 ? 0 : device.index(); }
  c10::Stream getStream(c10::Device device) const noexcept override { return c10::Stream(c10::Stream::DEFAULT, device); }
  c10::Stream exchangeStream(c10::Stream stream) const noexcept override { return stream; }
  c10::DeviceIndex deviceCount() const noexcept override { return 16; }
};

C10_REGISTER_GUARD_IMPL(PrivateUse1, EmulatedNpuGuard);
}  // namespace
"""


def _build_device_guard() -> Path:
    """Compile the guard once per torch build and source (cached under the temp folder)."""
    import hashlib
    import subprocess
    import tempfile

    root = Path(torch.__file__).parent
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
    key = hashlib.sha256(f"{torch.__version__}|{root}|{abi}|{_GUARD_SOURCE}".encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"parakeet-emulated-npu-guard-{key}"
    library = folder / "libemulated_npu_guard.so"
    if library.is_file():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"guard-{os.getpid()}.cpp"
    source.write_text(_GUARD_SOURCE)
    partial = folder / f"guard-{os.getpid()}.so"
    command = [_CXX, "-std=c++17", "-O1", "-shared", "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
               f"-I{root / 'include'}", str(source), "-o", str(partial), f"-L{root / 'lib'}", "-lc10",
               f"-Wl,-rpath,{root / 'lib'}"]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"emulated npu: building the device guard failed: {built.stderr.strip()[-500:]}")
    os.replace(partial, library)  # atomic: concurrent builders publish the same file
    source.unlink()
    return library


def _register_backend(module: types.ModuleType) -> str:
    """Make PrivateUse1 the `npu` device with `module` as `torch.npu`; returns how."""
    setup = _lookup(FULL_SETUP_API)
    if setup is not None:
        setup(rename="npu", backend_module=module)
        return FULL_SETUP_API
    import ctypes

    ctypes.CDLL(str(_build_device_guard()), mode=ctypes.RTLD_GLOBAL)
    torch.utils.rename_privateuse1_backend("npu")
    torch.utils.generate_methods_for_privateuse1_backend()
    torch._register_device_module("npu", module)
    return "rename_privateuse1_backend + _register_device_module + compiled device guard"


# ------------------------------------------------------------------ counters


@dataclass
class Counters:
    ops: int = 0
    syncs: int = 0
    h2d: int = 0
    d2h: int = 0
    graph_replays: int = 0  # each also counts as one op: a replay is one launch
    graph_captures: int = 0
    by_op: Counter = field(default_factory=Counter)
    sync_ops: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict:
        return {"ops": self.ops, "host_syncs": self.syncs, "h2d_copies": self.h2d, "d2h_copies": self.d2h,
                "graph_replays": self.graph_replays, "graph_captures": self.graph_captures}

    def sync(self, reason: str) -> None:
        _refuse_in_capture(f"a host synchronization ({reason})")
        self.syncs += 1
        self.sync_ops[reason] += 1

    def op(self, name: str) -> None:
        """One op dispatched; inside a capture it is recorded, not launched."""
        if _CAPTURE["graph"] is None:
            self.ops += 1
            self.by_op[name] += 1


COUNTERS = Counters()
_SETTINGS = {"strict": True}

# Ops whose result shape depends on the data: the host must wait for the device.
# Ops that read a device value on the host. Under inference_mode `item()` and `bool()` reach the
# dispatcher as themselves instead of decomposing into _local_scalar_dense: count them all.
HOST_READS = {"_local_scalar_dense", "item", "is_nonzero"}
DATA_DEPENDENT = {"nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_consecutive",
                  "unique_dim", "repeat_interleave"}


# ------------------------------------------------------------------ the tensor


class NpuTensor(torch.Tensor):
    """A tensor on npu:0 whose data is a CPU tensor (`payload`)."""

    _payload: torch.Tensor

    @staticmethod
    def __new__(cls, payload: torch.Tensor, index: int | None = None):
        index = _DEVICES["current"] if index is None else index
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, payload.size(), strides=payload.stride(), storage_offset=payload.storage_offset(),
            dtype=payload.dtype, layout=payload.layout, device=torch.device("npu", index),
            requires_grad=payload.requires_grad)
        wrapper._payload = payload
        _LIVE.add(wrapper)
        return wrapper

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __repr__(self, *, tensor_contents=None):
        return f"NpuTensor({self._payload!r}, device='{self.device}')"

    def tolist(self):
        COUNTERS.sync("tolist")  # raises inside a capture
        COUNTERS.d2h += 1
        return self._payload.tolist()

    def __deepcopy__(self, memo):
        return NpuTensor(copy.deepcopy(self._payload, memo), self.device.index)

    def __reduce_ex__(self, protocol):
        return (_rebuild, (self._payload, self.device.index))

    @classmethod
    def __torch_dispatch__(cls, func, types_, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def _rebuild(payload, index=None):
    return NpuTensor(payload, index)


_LIVE: "weakref.WeakSet[NpuTensor]" = weakref.WeakSet()


def _unwrap(value):
    return value._payload if isinstance(value, NpuTensor) else value


def _wrap(value):
    return NpuTensor(value) if isinstance(value, torch.Tensor) and not isinstance(value, NpuTensor) else value


def _is_npu_target(device) -> bool:
    return device is not None and torch.device(device).type == "npu"


def _check_placement(name: str, args, kwargs) -> None:
    """Strict mode: an op mixing npu tensors with CPU tensors (other than 0-dim scalars and
    index tensors) is an error, as on a real accelerator."""
    flat = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
    if not any(isinstance(t, NpuTensor) for t in flat):
        return
    index_op = name.startswith(("index", "_index_put", "index_put"))
    for tensor in flat:
        if isinstance(tensor, NpuTensor) or tensor.dim() == 0 or (index_op and tensor is not flat[0]):
            continue
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"npu:0 and cpu! (emulated npu, strict mode, op aten::{name})")


def _dispatch(func, args, kwargs):
    name = func._schema.name.split("::", 1)[1]
    overload = func._overloadpacket.__name__
    COUNTERS.op(name)
    if name == "to":  # reaches here from TorchScript (torch 2.4): its positional dtype/device -> _to_copy
        return func.decompose(*args, **kwargs)
    if name == "_to_copy":
        return _to_copy(func, args, kwargs)
    if name in ("copy_",):
        return _copy_(args, kwargs)
    if name == "_thnn_fused_lstm_cell":
        payloads = tuple(map(_unwrap, args))
        result = _lstm_cell(*payloads)
        _record(lambda: tuple(t._payload for t in _lstm_cell(*payloads)), result)
        return result
    if name == "_has_compatible_shallow_copy_type":  # an aten op up to torch 2.6: same kind of tensor?
        return isinstance(args[0], NpuTensor) == isinstance(args[1], NpuTensor)
    if _SETTINGS["strict"]:
        _check_placement(name, args, kwargs)
    if _CAPTURE["graph"] is not None:
        _check_capturable(name, args, kwargs)
    if overload in HOST_READS:
        COUNTERS.sync("item")
        COUNTERS.d2h += 1
    elif overload in DATA_DEPENDENT:
        COUNTERS.sync(overload)
    cpu_args, cpu_kwargs = tree_map(_unwrap, args), tree_map(_unwrap, kwargs)
    result = func(*cpu_args, **cpu_kwargs)
    if name in _FAULTY_OPS and result.numel() > 1024 and _faulty(args):
        result = result.neg()
    result = _rewrap(func, args, kwargs, result)
    _record(lambda: func(*cpu_args, **cpu_kwargs), result)
    return result


def _rewrap(func, args, kwargs, result):
    """Mutating ops return the very tensor they mutated; everything else is wrapped afresh."""
    if func._overloadpacket.__name__ in HOST_READS:
        return result
    returns = func._schema.returns
    if len(returns) == 1 and returns[0].alias_info is not None and returns[0].alias_info.is_write:
        out = kwargs.get("out")
        if out is None:
            out = args[0]
        if isinstance(out, NpuTensor) and out.shape != out._payload.shape:
            raise RuntimeError(f"emulated npu: aten::{func._schema.name} resized its output; not supported")
        return out
    base = args[0] if args else None
    if returns and returns[0].alias_info is not None and isinstance(base, NpuTensor) and not base.is_inference():
        # A view of a normal tensor must be a normal tensor, even inside inference_mode, or
        # autograd cannot share the base's version counter with it.
        with torch.inference_mode(False):
            return tree_map(_wrap, result)
    return tree_map(_wrap, result)


def _to_copy(func, args, kwargs):
    source, device = args[0], kwargs.get("device")
    payload = _unwrap(source)
    cpu_kwargs = dict(kwargs)
    cpu_kwargs.pop("device", None)
    cpu_kwargs.pop("pin_memory", None)
    result = aten._to_copy.default(payload, **cpu_kwargs)
    to_npu = _is_npu_target(device) or (device is None and isinstance(source, NpuTensor))
    if isinstance(source, NpuTensor) != to_npu:
        _refuse_in_capture(f"a copy between host and device (aten::_to_copy to {device})")
    if isinstance(source, NpuTensor) and not to_npu:
        COUNTERS.sync("d2h copy")
        COUNTERS.d2h += 1
        return result
    if not isinstance(source, NpuTensor) and to_npu:
        COUNTERS.h2d += 1
    if to_npu:
        copied = NpuTensor(result, _index_of(device) if _is_npu_target(device) else source.device.index)
        _record(lambda: aten._to_copy.default(payload, **cpu_kwargs), copied)
        return copied
    return result


def _copy_(args, kwargs):
    destination, source = args[0], args[1]
    non_blocking = kwargs.get("non_blocking", False) or (len(args) > 2 and args[2])
    if isinstance(destination, NpuTensor) != isinstance(source, NpuTensor) and source.dim() > 0:
        _refuse_in_capture("a copy between host and device (aten::copy_)")
    into, out_of = _unwrap(destination), _unwrap(source)
    into.copy_(out_of, non_blocking)
    _record(lambda: into.copy_(out_of), destination)
    if isinstance(destination, NpuTensor) and not isinstance(source, NpuTensor):
        COUNTERS.h2d += 1
    elif not isinstance(destination, NpuTensor) and isinstance(source, NpuTensor):
        COUNTERS.sync("d2h copy")
        COUNTERS.d2h += 1
    return destination


def _lstm_cell(input_gates, hidden_gates, cx, input_bias=None, hidden_bias=None):
    """ATen picks the fused LSTM cell for non-CPU devices; it has no CPU kernel, so here it is."""
    gates = input_gates + hidden_gates
    if input_bias is not None:
        gates = gates + input_bias
    if hidden_bias is not None:
        gates = gates + hidden_bias
    i, f, g, o = gates.chunk(4, dim=1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    cy = f * cx + i * g
    hy = o * cy.tanh()
    return NpuTensor(hy), NpuTensor(cy), NpuTensor(torch.cat([i, f, g, o], dim=1))


# ------------------------------------------------------------------ graphs

_CAPTURE: dict = {"graph": None}  # the NPUGraph being captured, if any


class CaptureError(RuntimeError):
    """What a real capture fails with: the operation cannot be part of a graph."""


def _refuse_in_capture(what: str) -> None:
    graph = _CAPTURE["graph"]
    if graph is not None:
        graph._abandon()
        raise CaptureError(f"emulated npu: {what} inside a graph capture; a captured graph cannot hold it")


def _check_capturable(name: str, args, kwargs) -> None:
    """A host tensor (other than a 0-dim scalar, which a kernel takes by value) read by a device op
    would need a host-to-device copy at capture time."""
    for tensor in torch.utils._pytree.tree_leaves((args, kwargs)):
        if isinstance(tensor, torch.Tensor) and not isinstance(tensor, NpuTensor) and tensor.dim() > 0:
            _refuse_in_capture(f"a host tensor of shape {tuple(tensor.shape)} read by aten::{name}")


def _record(compute, result) -> None:
    """Inside a capture: keep `compute` (the op on the same payloads) and the tensors it produced,
    so that a replay can redo it and write its outputs where the capture put them."""
    graph = _CAPTURE["graph"]
    if graph is not None:
        graph._steps.append((compute, result))


def _store(recorded, fresh) -> None:
    """A replayed op's outputs into the tensors the capture produced (outputs that alias an input,
    such as views and in-place results, are already there)."""
    for old, new in zip(tree_leaves(recorded), tree_leaves(fresh)):
        if not isinstance(old, NpuTensor) or not isinstance(new, torch.Tensor):
            continue
        if new.untyped_storage().data_ptr() == old._payload.untyped_storage().data_ptr():
            continue
        if new.shape != old._payload.shape:
            raise CaptureError(f"emulated npu: a replayed op gave shape {tuple(new.shape)}, captured "
                               f"{tuple(old._payload.shape)}: a data-dependent shape cannot be replayed")
        old._payload.copy_(new)


def tree_leaves(value):
    return torch.utils._pytree.tree_leaves(value)


class NPUGraph:
    """torch.npu.NPUGraph: capture_begin/capture_end record the device ops, replay() re-runs them."""

    def __init__(self):
        self._steps: list | None = None

    def capture_begin(self, pool=None, capture_error_mode: str = "global"):
        if _CAPTURE["graph"] is not None:
            raise CaptureError("emulated npu: a capture is already under way")
        _memory_allocated()
        self._steps = []
        _CAPTURE["graph"] = self

    def capture_end(self):
        if _CAPTURE["graph"] is self:
            _CAPTURE["graph"] = None
            COUNTERS.graph_captures += 1

    def _abandon(self):
        _CAPTURE["graph"] = None
        self._steps = None

    def replay(self):
        if self._steps is None:
            raise CaptureError("emulated npu: replay() of a graph that was not captured")
        COUNTERS.ops += 1
        COUNTERS.graph_replays += 1
        with torch.inference_mode():
            for compute, result in self._steps:
                _store(result, compute())

    def reset(self):
        self._steps = None

    def pool(self):
        return id(self)


class graph:
    """torch.npu.graph(npu_graph, pool=None, stream=None, capture_error_mode="global"): capture the block."""

    def __init__(self, npu_graph: NPUGraph, pool=None, stream=None, capture_error_mode: str = "global"):
        self.npu_graph = npu_graph

    def __enter__(self):
        self.npu_graph.capture_begin()
        return self.npu_graph

    def __exit__(self, *exc):
        self.npu_graph.capture_end()
        return False


# ------------------------------------------------------------------ torch.npu


def _memory_allocated() -> int:
    storages = {}
    for tensor in list(_LIVE):
        storage = tensor._payload.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    used = sum(storages.values())
    _MEMORY["peak"] = max(_MEMORY["peak"], used)
    return used


_MEMORY = {"peak": 0}


def _make_module() -> types.ModuleType:
    module = types.ModuleType("torch.npu")
    module.is_available = lambda: True
    module.is_initialized = lambda: True
    module._is_in_bad_fork = lambda: False
    module.device_count = device_count
    module.current_device = lambda: _DEVICES["current"]
    module.manual_seed_all = lambda seed: None
    module.manual_seed = lambda seed: None
    module.get_device_name = lambda index=0: DEVICE_NAME
    module.get_soc_version = lambda: 223

    def set_device(index):
        index = torch.device(index).index if isinstance(index, (str, torch.device)) else index
        if index is None:
            return
        if not 0 <= index < device_count():
            raise RuntimeError(f"emulated npu: only npu:0..npu:{device_count() - 1} exist, not npu:{index}")
        _DEVICES["current"] = index

    def synchronize(device=None):
        _refuse_in_capture("torch.npu.synchronize() (a host synchronization)")
        _memory_allocated()

    def reset_peak_memory_stats(device=None):
        _MEMORY["peak"] = 0
        _memory_allocated()

    def max_memory_allocated(device=None):
        _memory_allocated()
        return _MEMORY["peak"]

    module.set_device = set_device
    module.synchronize = synchronize
    module.memory_allocated = lambda device=None: _memory_allocated()
    module.max_memory_allocated = max_memory_allocated
    module.reset_peak_memory_stats = reset_peak_memory_stats
    module.mem_get_info = lambda device=None: (TOTAL_MEMORY - _memory_allocated(), TOTAL_MEMORY)
    module.set_compile_mode = lambda jit_compile=False: module.__dict__.__setitem__("jit_compile", jit_compile)
    module.conv = types.SimpleNamespace(allow_hf32=True)
    module.matmul = types.SimpleNamespace(allow_hf32=False)
    # autocast asks the backend module for these
    module.get_amp_supported_dtype = lambda: [torch.float16, torch.bfloat16]
    module.is_autocast_enabled = lambda: False
    module.get_autocast_dtype = lambda: torch.float16
    module.set_autocast_enabled = lambda enabled: None
    module.set_autocast_dtype = lambda dtype: None
    module.counters = COUNTERS
    module.NPUGraph = NPUGraph
    module.graph = graph
    return module


# ------------------------------------------------------------------ PrivateUse1 kernels

_LIBRARIES: list = []


def _register_kernels() -> None:
    """Ops that start on the host with device="npu" (factories, host-to-device copies) reach the
    PrivateUse1 key, not __torch_dispatch__: they need kernels of their own."""
    impl = torch.library.Library("aten", "IMPL")
    _LIBRARIES.append(impl)

    # Inside a capture an allocation comes from the graph's pool (as on CUDA and Ascend): the replay
    # writes into the very tensor the capture made.
    def empty_memory_format(size, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
        COUNTERS.op("empty")
        return NpuTensor(torch.empty(size, dtype=dtype, layout=layout,
                                     memory_format=memory_format or torch.contiguous_format), _index_of(device))

    def empty_strided(size, stride, dtype=None, layout=None, device=None, pin_memory=None):
        COUNTERS.op("empty_strided")
        return NpuTensor(torch.empty_strided(size, stride, dtype=dtype, layout=layout), _index_of(device))

    def copy_from(source, destination, non_blocking=False):
        return _copy_((destination, source), {"non_blocking": non_blocking})

    def arange_start_step(start, end, step=1, dtype=None, layout=None, device=None, pin_memory=None):
        COUNTERS.op("arange")
        result = NpuTensor(torch.arange(start, end, step, dtype=dtype), _index_of(device))
        _record(lambda: torch.arange(start, end, step, dtype=dtype), result)
        return result

    def arange_end(end, dtype=None, layout=None, device=None, pin_memory=None):
        return arange_start_step(0, end, 1, dtype)

    def arange_start(start, end, dtype=None, layout=None, device=None, pin_memory=None):
        return arange_start_step(start, end, 1, dtype)

    impl.impl("empty.memory_format", empty_memory_format, "PrivateUse1")
    impl.impl("empty_strided", empty_strided, "PrivateUse1")
    impl.impl("_copy_from", copy_from, "PrivateUse1")
    # arange's generic kernel resizes an empty output, which a wrapper tensor cannot do
    impl.impl("arange.start_step", arange_start_step, "PrivateUse1")
    impl.impl("arange", arange_end, "PrivateUse1")
    impl.impl("arange.start", arange_start, "PrivateUse1")
    # autocast for the new backend: let every op through to the kernels (torch 2.4 has no
    # Library.fallback: the dispatcher's own library object registers the fallthrough there)
    if not hasattr(torch.library.Library, "fallback"):
        autocast = torch._C._dispatch_library("IMPL", "_", "AutocastPrivateUse1")
        autocast.fallback_fallthrough()
        _LIBRARIES.append(autocast)
        return
    autocast = torch.library.Library("_", "IMPL")
    autocast.fallback(torch.library.fallthrough_kernel, "AutocastPrivateUse1")
    _LIBRARIES.append(autocast)


def _pin_memory_is_a_no_op() -> None:
    """NeMo's DataLoader pins host memory once an accelerator exists; there is no pinned-memory
    allocator for a Python backend, and pinning changes nothing on an emulator."""
    torch.Tensor.pin_memory = lambda self, device=None: self
    torch.Tensor.is_pinned = lambda self, device=None: False


_INSTALLED = {"done": False}


def install(strict: bool = True) -> types.ModuleType:
    """Register the emulated `npu` device in this process (once) and return `torch.npu`."""
    missing = missing_api()
    if missing:
        raise RuntimeError(f"this torch ({torch.__version__}) lacks {missing}, which the emulated npu needs")
    _SETTINGS["strict"] = strict
    if _INSTALLED["done"]:
        return torch.npu
    module = _make_module()
    module.registered_by = _register_backend(module)
    _register_kernels()
    _pin_memory_is_a_no_op()
    from common.device import counters

    counters.register_source(COUNTERS.snapshot)
    _INSTALLED["done"] = True
    return module


def set_strict(strict: bool) -> None:
    _SETTINGS["strict"] = strict


def main(argv: list[str] | None = None) -> int:
    """python -m tests.emulated_npu SCRIPT [ARGS...] (or -c CODE): run it with the emulated npu installed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    install()
    sys.argv = argv
    try:
        if argv[0] == "-c":
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


if __name__ == "__main__":
    # Run as `python -m`, this file is __main__; the code it runs imports tests.emulated_npu.
    # Use that one module everywhere, so that there is a single device and a single set of counters.
    from tests.emulated_npu import main as module_main

    sys.exit(module_main())
