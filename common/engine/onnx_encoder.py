"""The fp32 encoder run by ONNX Runtime on the CPU (`--encoder-runtime onnxruntime`).

The encoder is exported by NeMo's own `encoder.export()` (what onnx-asr and sherpa-onnx run),
once per model file, into a cache folder published by a rename, as ONNX Runtime's own optimized
graph (its portable, "extended" level): later runs only open it, and the session takes about
1.7 s to create instead of 5-11 s for the plain export (measured; same outputs, bit for bit). ONNX
Runtime's fused CPU kernels run the full-size encoder about 20% faster than torch eager fp32
on 2 cores (README, "Against the CPU peers"); its outputs differ from torch's in the last bits
(2.6e-6 at most, measured), so transcripts are compared in the tests, not assumed. Everything
around the encoder (features, TDT decoding, timestamps) stays NeMo's, in torch.

Full attention only: long audio (local attention, common/engine/long_audio.py) keeps the torch
encoder, whose attention NeMo switches at run time.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch

EXPORT_VERSION = 2  # bump when the export changes: older cached exports are then ignored
ENCODER_FILE = "encoder.onnx"


def onnx_encoder(loaded) -> "OnnxRuntimeEncoder":
    """The model's encoder in ONNX Runtime, kept with the model (`loaded.encoders`)."""
    kept = loaded.encoders.get("onnxruntime")
    if kept is None:
        folder = cached_export(loaded.model.encoder, export_key(loaded))
        kept = loaded.encoders["onnxruntime"] = (None, OnnxRuntimeEncoder(folder / ENCODER_FILE, loaded.model.encoder))
    return kept[1]


def export_key(loaded) -> str:
    """What the export depends on: the model file (path, size, mtime) or, for a model without one,
    its encoder's weights; and the versions that write the ONNX graph."""
    import nemo
    import onnxruntime

    from ..model.loading import model_identity

    identity = model_identity(loaded.source)
    if loaded.source.path is None or not os.path.exists(loaded.source.path):
        digest = hashlib.sha256()
        for name, tensor in loaded.model.encoder.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        identity += " " + digest.hexdigest()
    text = (f"{EXPORT_VERSION} {identity} torch {torch.__version__} nemo {nemo.__version__} "
            f"onnxruntime {onnxruntime.__version__}")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_root() -> Path:
    from ..model.random_models import default_cache_dir

    return default_cache_dir() / "onnx-encoders"


def cached_export(encoder, key: str, root: Optional[Path] = None) -> Path:
    """The export folder for `key`, exported now when missing. Exported into a temp folder and
    renamed into place: a run stopped half way leaves no folder that looks finished."""
    root = root or cache_root()
    folder = root / key
    if (folder / ENCODER_FILE).exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}."))
    try:
        export_encoder(encoder, scratch)
        try:
            os.rename(scratch, folder)
        except OSError:  # another process published the same export first: theirs is as good
            if not (folder / ENCODER_FILE).exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def export_encoder(encoder, folder: Path) -> None:
    """NeMo's export of a copy (export() rewrites modules for tracing; the live model stays as it
    is), then ONNX Runtime's graph optimizations up to its "extended" level, saved with the weights
    in one external file (the full-size encoder is past protobuf's 2 GB). That level is portable:
    the hardware-specific layouts of ORT_ENABLE_ALL are made when a session opens the file."""
    import onnxruntime

    exported = copy.deepcopy(encoder).cpu().eval()
    raw = folder / "raw"
    raw.mkdir()
    with torch.inference_mode(False), torch.no_grad():
        exported.export(str(raw / ENCODER_FILE))
    del exported
    options = _session_options(onnxruntime, onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    options.optimized_model_filepath = str(folder / ENCODER_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", ENCODER_FILE + ".data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    onnxruntime.InferenceSession(str(raw / ENCODER_FILE), options, providers=["CPUExecutionProvider"])
    shutil.rmtree(raw)


def _session_options(onnxruntime, level):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    # ORT's threads otherwise spin for a while after each run, on the cores torch's decoding
    # runs on next: decoding the clip after it took 0.085-0.092 s instead of 0.048-0.051 (measured).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntimeEncoder(torch.nn.Module):
    """Called as NeMo calls its encoder: (audio_signal [B, F, T], length [B]) -> (encoded [B, D, T'],
    encoded lengths). Anything else (subsampling factor, attention settings, freeze/unfreeze in
    NeMo's transcribe()) is the torch encoder's, which it stands in for. A torch Module only so
    that NeMo can hold it where its encoder was; it has no parameters of its own."""

    def __init__(self, path: Path, torch_encoder):
        import onnxruntime

        super().__init__()
        options = _session_options(onnxruntime, onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        object.__setattr__(self, "_torch_encoder", torch_encoder)  # not a child: its weights are not ours

    def forward(self, audio_signal, length, **unused):
        encoded, lengths = self._session.run(None, {self._inputs[0]: audio_signal.detach().float().cpu().numpy(),
                                                    self._inputs[1]: length.detach().cpu().long().numpy()})
        return torch.from_numpy(encoded), torch.from_numpy(lengths)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_torch_encoder"], name)
