"""The fp32 encoder run by ONNX Runtime on the CPU (`--encoder-runtime onnxruntime`).

The encoder is exported by NeMo's own `encoder.export()` (what onnx-asr and sherpa-onnx run),
once per model file, into a cache folder published by a rename, as ONNX Runtime's own optimized
graph (its portable, "extended" level): later runs only open it, and the session takes about
1.7 s to create instead of 5-11 s for the plain export (measured; same outputs, bit for bit). ONNX
Runtime's fused CPU kernels run the full-size encoder about 20% faster than torch eager fp32
on 2 cores (docs/benchmark.md, "Against the CPU peers"); its outputs differ from torch's in the last bits
(2.6e-6 at most, measured), so transcripts are compared in the tests, not assumed. Everything
around the encoder (features, TDT decoding, timestamps) stays NeMo's, in torch.

Full attention only: long audio (local attention, common/engine/long_audio.py) keeps the torch
encoder, whose attention NeMo switches at run time.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch

EXPORT_VERSION = 2  # bump when the export changes: older cached exports are then ignored
ENCODER_FILE = "encoder.onnx"


# ONNX Runtime "prepacks" the weights of every MatMul for its GEMM kernels when a session opens:
# 2.1-2.3 s for the full-size encoder on 2 cores, after which each run is 0.2 s (one clip) to
# 0.5 s (8 clips) faster than without (0.50 vs 0.72 s on the 7.24 s clip; measured). It pays off
# over about 300 s of audio: a shorter job opens its session without it.
PREPACK_AFTER_SECONDS = 300.0


def prepacks(audio_seconds: float) -> bool:
    return audio_seconds > PREPACK_AFTER_SECONDS


def onnx_encoder(loaded, prepack: bool = True) -> "OnnxRuntimeEncoder":
    """The model's encoder in ONNX Runtime, kept with the model (`loaded.encoders`): the first
    call decides whether its session prepacks."""
    kept = loaded.encoders.get("onnxruntime")
    if kept is None:
        folder = cached_export(loaded.model.encoder, export_key(loaded))
        encoder = OnnxRuntimeEncoder(folder / ENCODER_FILE, loaded.model.encoder, prepack)
        kept = loaded.encoders["onnxruntime"] = (None, encoder)
    return kept[1]


def export_key(loaded) -> str:
    """What the export depends on: the model (caches.derived_key) and the versions that write
    and optimize the ONNX graph."""
    from .caches import derived_key

    return derived_key(loaded, _export_versions())


def _export_versions() -> str:
    import nemo
    import onnxruntime

    return (f"export {EXPORT_VERSION} torch {torch.__version__} nemo {nemo.__version__} "
            f"onnxruntime {onnxruntime.__version__}")


# Sessions being created in the background, by export file (open_in_background).
_opening: dict = {}


def open_in_background(source, prepack: bool = True) -> None:
    """Start creating the ONNX Runtime session of `source`'s cached export, when it has one, in
    another thread, before the model is restored: opening the full-size encoder takes 2-3 s,
    which then overlap the restore's 5-6 s instead of following them (ONNX Runtime releases the
    GIL meanwhile). The encoder built later takes this session."""
    from concurrent.futures import ThreadPoolExecutor

    from .caches import source_key

    key = source_key(source, _export_versions())
    path = cache_root() / key / ENCODER_FILE if key else None
    if path is None or not path.exists() or (str(path), prepack) in _opening:
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="onnxruntime-session")
    _opening[(str(path), prepack)] = pool.submit(_new_session, path, prepack)
    pool.shutdown(wait=False)  # the thread ends with its one task


def cache_root() -> Path:
    from .caches import cache_folder

    return cache_folder("onnx-encoders")


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


def _new_session(path: Path, prepack: bool):
    import onnxruntime

    options = _session_options(onnxruntime, onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeEncoder(torch.nn.Module):
    """Called as NeMo calls its encoder: (audio_signal [B, F, T], length [B]) -> (encoded [B, D, T'],
    encoded lengths). Anything else (subsampling factor, attention settings, freeze/unfreeze in
    NeMo's transcribe()) is the torch encoder's, which it stands in for. A torch Module only so
    that NeMo can hold it where its encoder was; it has no parameters of its own."""

    def __init__(self, path: Path, torch_encoder, prepack: bool = True):
        super().__init__()
        self.prepacked = prepack
        opening = _opening.pop((str(path), prepack), None)
        self._session = opening.result() if opening is not None else _new_session(path, prepack)
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
