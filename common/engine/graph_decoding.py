"""TDT greedy decoding replayed from device graphs on npu (`--decode-graphs`).

NeMo's label-looping computer has a graph mode without while loops: four graphs (before the
outer loop, before the inner loop, the inner-loop body, after it), the host checking the loop
conditions between replays. NeMo runs it only on CUDA; here the same four step functions are
captured with the device's own graphs (common/device/graphs.py) and NeMo's own loop replays
them, so the decoding is NeMo's, step for step, with a few launches per label step instead of
dozens. What stays: two host synchronizations per label step (the loop conditions).

Captures are kept per (batch size, encoder-length bucket): buckets double from NeMo's 375
frames (30 s), so a data set captures once per batch size and length class, not per length.
Under bf16/fp16 the graphs decode in fp32, as NeMo's CUDA graphs do (it turns autocast off
around them). Where NeMo's layout is not known, or a capture fails, decoding stays eager and
says so once.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass, field
from typing import Optional

from ..device.graphs import graph_backend, graphs_wanted

FIRST_BUCKET_FRAMES = 375  # NeMo's INITIAL_MAX_TIME: its own CUDA graphs start at 30 s of encoder frames
WARMUP_RUNS = 3  # NeMo's warm-up before capturing (outside DDP)


@dataclass(frozen=True)
class LoopLayout:
    """Where one NeMo line keeps its graph-mode entry and the four step groups to capture."""

    entry: str  # runs the no-while-loops mode: reinitializes, replays, returns as the eager loop does
    steps: tuple  # per graph (before_outer_loop, before_inner_loop, inner_loop_code, after_inner_loop)


# NeMo 2.7 and 3.0: GreedyBatchedTDTLabelLoopingComputer (tdt_label_looping.py); tested on both.
# NeMo 2.2's GreedyBatchedTDTLoopLabelsComputer has the same mode under other names
# (loop_labels_cuda_graphs; _before_inner_loop_get_decoder_output + _get_joint_output,
# _inner_loop_code, _after_inner_loop), but its capture could not be checked (the emulated npu
# fails inside torch 2.4 there): it is left out, so NeMo 2.2 decodes eagerly and says so.
LAYOUTS = (
    LoopLayout("cuda_graphs_impl", (("_before_outer_loop",), ("_before_inner_loop_get_joint_output",),
                                    ("_inner_loop_step_find_next_non_blank",), ("_after_inner_loop_step",))),
)
GRAPH_NAMES = ("before_outer_loop", "before_inner_loop", "inner_loop_code", "after_inner_loop")
_WARNED: set = set()


@dataclass
class SeparateGraphs:
    """What NeMo's loop replays (its own dataclass makes CUDA graphs)."""

    before_outer_loop: object
    before_inner_loop: object
    inner_loop_code: object
    after_inner_loop: object


@dataclass
class GraphDecoding:
    """One computer's graph decoding: the mode asked for, the captures, and whether it gave up."""

    layout: Optional[LoopLayout]
    mode: str = "off"
    captures: dict = field(default_factory=dict)  # (device, batch, bucket) -> (NeMo state, SeparateGraphs)
    failed: Optional[str] = None

    def wanted(self, device) -> bool:
        return self.failed is None and graphs_wanted(self.mode, str(device))


def loop_layout(computer) -> Optional[LoopLayout]:
    """The layout this NeMo's computer has, or None."""
    modes = getattr(computer, "CudaGraphsMode", None)
    if modes is None or not hasattr(modes, "NO_WHILE_LOOPS"):
        return None
    for layout in LAYOUTS:
        names = (layout.entry, "_graph_reinitialize", *(n for group in layout.steps for n in group))
        if all(callable(getattr(computer, name, None)) for name in names):
            return layout
    return None


def length_bucket(frames: int) -> int:
    """Encoder frames rounded up to the next of 375, 750, 1500, ... (so many lengths, few captures)."""
    bucket = FIRST_BUCKET_FRAMES
    while bucket < frames:
        bucket *= 2
    return bucket


def use_decode_graphs(model, mode: str, loop_method: Optional[tuple]) -> None:
    """Set --decode-graphs for the model's TDT greedy_batch computer (`loop_method`: (computer, name
    of its eager loop), from batched.tdt_loop). Installs the graph path under the eager loop once
    per computer; `mode` is read at every call, so one loaded model decodes both ways."""
    computer, method = loop_method
    if computer is None:
        return
    settings = getattr(computer, "parakeet_graphs", None)
    if settings is None:
        if mode == "off":
            return  # nothing to install: the eager loop as NeMo has it
        settings = GraphDecoding(loop_layout(computer))
        _install(computer, method, settings)
    settings.mode = mode


def _install(computer, method: str, settings: GraphDecoding) -> None:
    # A per-clip duration hook (batched.per_clip_token_durations) may already wrap the loop: go
    # under it, so that its fix applies to the graph path too (it re-wraps when called next).
    current = getattr(computer, method)
    if getattr(current, "per_clip", False):
        delattr(computer, method)
    eager = getattr(computer, method)

    @functools.wraps(eager)
    def loop(*args, **kwargs):
        encoder_output = kwargs["encoder_output"] if "encoder_output" in kwargs else args[0]
        lengths = kwargs["encoder_output_length"] if "encoder_output_length" in kwargs else args[1]
        resumed = kwargs.get("prev_batched_state", args[2] if len(args) > 2 else None) is not None
        if resumed or kwargs.get("multi_biasing_ids") is not None or not settings.wanted(encoder_output.device):
            return eager(*args, **kwargs)
        problem = _unsupported(computer, settings, encoder_output.device)
        if problem is None:
            try:
                return _graph_decode(computer, settings, encoder_output, lengths)
            except Exception as error:  # a capture the device refused: decode eagerly from now on
                problem = f"capturing the decoding steps failed ({type(error).__name__}: {error})"
        settings.failed = problem
        _warn_once(f"--decode-graphs: {problem}; decoding eagerly")
        return eager(*args, **kwargs)

    computer.parakeet_graphs = settings
    setattr(computer, method, loop)


def _unsupported(computer, settings: GraphDecoding, device) -> Optional[str]:
    if graph_backend(str(device)) is None:
        return f"{device.type} has no graph API here (torch.{device.type}.graph)"
    if settings.layout is None:
        return "this NeMo's TDT label-looping computer has no known graph layout (graphs need NeMo 2.7 or newer)"
    if getattr(computer, "has_fusion_models", lambda: False)() or getattr(computer, "max_symbols", None) is None:
        return "graphs need max_symbols and no fusion models"
    return None


def _graph_decode(computer, settings: GraphDecoding, encoder_output, lengths):
    """NeMo's own no-while-loops mode, on this device's graphs and the capture of this shape."""
    import torch

    device = encoder_output.device
    key = (str(device), int(encoder_output.shape[0]), length_bucket(int(encoder_output.shape[1])))
    computer.state, computer.separate_graphs = settings.captures.get(key, (None, None))
    overrides = {"cuda_graphs_mode": computer.CudaGraphsMode.NO_WHILE_LOOPS,
                 # NeMo sizes new state buffers to max(frames, INITIAL_MAX_TIME): the bucket
                 "INITIAL_MAX_TIME": key[2],
                 "_partial_graphs_compile": functools.partial(_capture, computer, settings.layout),
                 "_warmup_for_cuda_graphs": lambda: None}  # _capture warms up on its own
    previous_mode = computer.cuda_graphs_mode
    try:
        with _instance_attributes(computer, overrides), torch.autocast(device.type, enabled=False):
            result = getattr(computer, settings.layout.entry)(encoder_output=encoder_output,
                                                               encoder_output_length=lengths)
        settings.captures[key] = (computer.state, computer.separate_graphs)
        result[0].durations_per_clip = True  # NeMo's graph steps keep each clip's durations (batched.py)
        return result
    finally:
        computer.cuda_graphs_mode = previous_mode
        computer.state, computer.separate_graphs = None, None


@contextlib.contextmanager
def _instance_attributes(instance, values: dict):
    """Set attributes on the instance for the block, then give back what was there."""
    saved = {name: vars(instance)[name] for name in values if name in vars(instance)}
    for name, value in values.items():
        setattr(instance, name, value)
    try:
        yield
    finally:
        for name in values:
            if name in saved:
                setattr(instance, name, saved[name])
            elif name in vars(instance):
                delattr(instance, name)


def _capture(computer, layout: LoopLayout) -> None:
    """NeMo's `_partial_graphs_compile` with the device's graphs: warm the steps up on a side
    stream, then capture each group on NeMo's static state buffers."""
    import torch

    state = computer.state
    backend = graph_backend(str(state.device))
    groups = [[getattr(computer, name) for name in names] for names in layout.steps]
    # as NeMo's warm-up: every step on an all-zero batch of length 1, then length 0 (inactive)
    state.encoder_output_projected.fill_(0.0)
    state.encoder_output_length.fill_(1)
    with backend.side_stream():
        for _ in range(WARMUP_RUNS):
            for group in groups:
                for step in group:
                    step()
    state.encoder_output_length.fill_(0)
    graphs = []
    for group in groups:
        graph = backend.new_graph()
        with torch.inference_mode(), backend.capture(graph):
            for step in group:
                step()
        graphs.append(graph)
    computer.separate_graphs = SeparateGraphs(*graphs)


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)
