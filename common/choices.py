"""Every choice and default the toolkit offers, in one place: the scripts' options, the library
API, the engine and the inputs all read them from here, so a default cannot differ between them.

Standard library only (the bottom layer): the scripts parse their options with these before
torch or NeMo is imported.
"""

from __future__ import annotations

# How a batch is run. batched: inputs sorted by length and batched by an audio budget, run
# through preprocessor, encoder and decoding directly (common/engine/batched.py); nemo: NeMo's
# model.transcribe() in input order. "direct" is the batched engine's old name.
ENGINES = ("batched", "nemo")
ENGINE_ALIASES = {"direct": "batched"}
DEFAULT_ENGINE = "batched"

# Batching: at most this many files, and (batched engine) this many padded audio seconds, a call.
BATCH_SIZE = 16
BATCH_SECONDS = 120.0

# The long-audio rule: an input longer than this runs alone, with local attention.
LONG_AUDIO_SECONDS = 600.0

# Precision and the encoder's runtime (common/engine/precision.py says what each does).
DTYPES = ("fp32", "bf16", "fp16", "int8")
DEFAULT_DTYPE = "fp32"
ENCODER_RUNTIMES = ("torch", "onnxruntime")
DEFAULT_ENCODER_RUNTIME = "torch"

# TDT/RNNT decoding on an NPU from device graphs (common/device/graphs.py).
GRAPH_MODES = ("off", "on", "auto")
DEFAULT_GRAPH_MODE = "off"

# How a model file is read: fast (cached extraction, memory-mapped weights) or NeMo's restore_from().
LOADERS = ("fast", "nemo")
DEFAULT_LOADER = "fast"

# How --audio paths are read (common/inputs/layouts.py); auto = detected from each path.
LAYOUTS = ("auto", "audio", "manifest", "librispeech", "kaldi", "hf")

# Devices: --device auto = npu if torch_npu loads and sees a card, else cuda, else cpu.
DEFAULT_DEVICE = "auto"

# The accuracy check: the reference device (always fp32 in torch), or NO_REFERENCE (the device
# against the truth only), and the verdict's thresholds on device vs reference.
DEFAULT_REFERENCE = "cpu"
NO_REFERENCE = "none"
MIN_MATCH = 1.0  # share of files whose transcripts are identical
MAX_WER = 0.0  # WER of device vs reference

# Untimed runs before timing (accuracy and benchmark), and timed runs of the benchmark.
WARMUP = 1
RUNS = 5

# What inference.py reports and writes.
TIMESTAMPS = ("none", "word", "segment", "char", "all")
OUTPUT_FORMATS = ("text", "json", "jsonl", "srt", "vtt", "nemo-manifest")
SUBTITLE_FORMATS = ("srt", "vtt")  # one file per input
