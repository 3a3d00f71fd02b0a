"""What the server measures, in Prometheus' text format on GET /metrics (prometheus-client, in a
registry of the server's own): requests by endpoint and status, latency, audio seconds
transcribed, the queue's depth, and each batch's files, audio and time. Every series carries the
device the model runs on."""

from __future__ import annotations

# Files a batch: powers of two up to the largest --max-batch-files anyone would use.
BATCH_FILE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, device: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = {"labelnames": ("device",), "registry": self.registry}
        self.device = device
        self.requests = Counter("parakeet_requests", "HTTP requests answered, by endpoint and status code",
                                ("device", "endpoint", "status"), registry=self.registry)
        self.latency = Histogram("parakeet_request_seconds", "time from a transcription request's arrival to "
                                 "its answer", buckets=LATENCY_BUCKETS, **labels).labels(device)
        self.audio_seconds = Counter("parakeet_audio_seconds", "seconds of audio transcribed",
                                     **labels).labels(device)
        self.queue_depth = Gauge("parakeet_queue_depth", "requests waiting for the model", **labels).labels(device)
        self.batch_files = Histogram("parakeet_batch_files", "requests per model call",
                                     buckets=BATCH_FILE_BUCKETS, **labels).labels(device)
        self.batch_audio = Histogram("parakeet_batch_audio_seconds", "seconds of audio per model call",
                                     buckets=LATENCY_BUCKETS, **labels).labels(device)
        self.batch_seconds = Histogram("parakeet_batch_seconds", "time a model call took",
                                       buckets=LATENCY_BUCKETS, **labels).labels(device)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(self.device, endpoint, str(status)).inc()
        if endpoint == "/v1/audio/transcriptions":
            self.latency.observe(seconds)

    def batch(self, files: int, audio_seconds: float, seconds: float) -> None:
        self.batch_files.observe(files)
        self.batch_audio.observe(audio_seconds)
        self.batch_seconds.observe(seconds)

    def transcribed(self, audio_seconds: float) -> None:
        self.audio_seconds.inc(audio_seconds)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
