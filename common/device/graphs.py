"""Device graphs: capture a step once on static buffers, replay it as one launch.

The one place that knows where a device keeps them: `torch.npu.NPUGraph` / `torch.npu.graph`
(torch_npu), `torch.cuda.CUDAGraph` / `torch.cuda.graph`. Capture needs static shapes and no
host synchronization; replays read and write the tensors the capture used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

from ..choices import GRAPH_MODES

_GRAPH_CLASSES = {"npu": "NPUGraph", "cuda": "CUDAGraph"}


@dataclass(frozen=True)
class GraphBackend:
    """A device type's graph API."""

    device_type: str
    module: object  # torch.npu or torch.cuda

    def new_graph(self):
        return getattr(self.module, _GRAPH_CLASSES[self.device_type])()

    def capture(self, graph):
        """The block's device work becomes `graph` (nothing runs on the device until a replay)."""
        return self.module.graph(graph)

    @contextlib.contextmanager
    def side_stream(self):
        """Warm-up runs on a stream of their own, as torch documents before a capture (lazy
        initialization must not land in the graph); inline where the backend has no streams."""
        stream_class = getattr(self.module, "Stream", None)
        if stream_class is None or not hasattr(self.module, "stream"):
            yield
            return
        stream = stream_class()
        stream.wait_stream(self.module.current_stream())
        with self.module.stream(stream):
            yield
        self.module.current_stream().wait_stream(stream)


def graph_backend(device: str) -> Optional[GraphBackend]:
    """The graph API of `device` ("npu:0", "cuda"), or None where it has none."""
    import torch

    device_type = str(device).split(":")[0]
    if device_type not in _GRAPH_CLASSES:
        return None
    module = getattr(torch, device_type, None)
    if module is None or not hasattr(module, "graph") or not hasattr(module, _GRAPH_CLASSES[device_type]):
        return None
    return GraphBackend(device_type, module)


def graphs_wanted(mode: str, device: str) -> bool:
    """--decode-graphs for decoding on `device`, an npu: `on` always (an npu without graphs then
    falls back to eager with a warning), `auto` where `torch.npu.graph` exists, `off` never.
    Other devices are not this option's business: NeMo captures its own CUDA graphs, and a CPU
    has no launch cost to save."""
    device_type = str(device).split(":")[0]
    if mode not in GRAPH_MODES:
        raise ValueError(f"decode graphs {mode!r}: not one of {', '.join(GRAPH_MODES)}")
    if device_type != "npu" or mode == "off":
        return False
    if mode == "on":
        return True
    return graph_backend(device) is not None
