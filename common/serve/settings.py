"""The server's settings and their defaults (the engine's own, BATCH_SIZE and BATCH_SECONDS,
come from common/choices.py). Standard library only: serve.py parses its options with these
before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..choices import BATCH_SECONDS, BATCH_SIZE, DEFAULT_DTYPE, DEFAULT_LOADER

# OpenAI's /v1/audio/transcriptions: what `response_format` and `timestamp_granularities[]` take.
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TIMESTAMP_GRANULARITIES = ("word", "segment")
DEFAULT_GRANULARITIES = ("segment",)  # OpenAI's verbose_json gives segments unless asked otherwise

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_WAIT_MS = 10.0  # how long the first request of a batch waits for others to join it
MAX_QUEUE = 256  # requests waiting for the model; more are refused with 429
MAX_UPLOAD_MB = 25.0  # OpenAI's own limit on an upload
DRAIN_SECONDS = 30.0  # SIGTERM: how long requests in flight may take to finish


@dataclass(frozen=True)
class ServeSettings:
    model: Optional[str] = None  # a spec, as the scripts' --model; None: default_model_spec()
    device: str = "cpu"
    dtype: str = DEFAULT_DTYPE
    loader: str = DEFAULT_LOADER
    model_names: tuple[str, ...] = ()  # the ids clients name in `model`; () -> the spec
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_batch_seconds: float = BATCH_SECONDS
    max_batch_files: int = BATCH_SIZE
    max_wait_ms: float = MAX_WAIT_MS
    max_queue: int = MAX_QUEUE
    max_upload_mb: float = MAX_UPLOAD_MB
    drain_seconds: float = DRAIN_SECONDS

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
