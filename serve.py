#!/usr/bin/env python3
"""Serve transcription over HTTP as OpenAI's API does (POST /v1/audio/transcriptions): the model
loads once, concurrent requests are batched, and the clients people already have work unchanged.

Examples:
  python serve.py --model demo --device cpu --port 8000
  curl -F file=@examples/demo.wav -F model=demo http://127.0.0.1:8000/v1/audio/transcriptions
  curl -F file=@talk.wav -F model=demo -F response_format=srt http://127.0.0.1:8000/v1/audio/transcriptions
  python serve.py --model parakeet-tdt-0.6b-v2.nemo --device npu:0 --host 0.0.0.0 --model-name whisper-1

Endpoints: POST /v1/audio/transcriptions, GET /v1/models, /health, /ready, /metrics (docs/serve.md).
Needs requirements-serve.txt. SIGTERM: stops accepting, finishes the requests in flight within
--drain-seconds, exits 0.
"""

from __future__ import annotations

import os
import sys

# A torch_npu that cannot load (no CANN) must not break `import torch`: we import it ourselves.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from common import choices, cli, options  # noqa: E402  (light: no torch/NeMo import)
from common.serve import settings as defaults  # noqa: E402  (standard library only)

SERVE_PACKAGES = ("fastapi", "uvicorn", "multipart", "prometheus_client")


def build_parser():
    parser = cli.parser_from_doc(__doc__)
    cli.add_model_arguments(parser)
    cli.group(parser, "model and device").add_argument(
        "--model-name", action="append", type=options.non_empty, default=None, metavar="NAME",
        help="the id clients give as `model` and GET /v1/models lists (repeat for aliases, e.g. whisper-1); "
             "default: the --model spec")
    cli.add_dtype_argument(parser, "encoder/decoder precision")
    decoding = cli.group(parser, "decoding")
    decoding.add_argument("--max-batch-seconds", type=options.positive, default=choices.BATCH_SECONDS,
                          help="most padded audio seconds (requests x longest) per model call")
    decoding.add_argument("--max-batch-files", type=options.integer(1), default=choices.BATCH_SIZE,
                          help="most requests per model call")
    decoding.add_argument("--max-wait-ms", type=options.non_negative, default=defaults.MAX_WAIT_MS,
                          help="how long a batch's first request waits for others to join it")
    control = cli.group(parser, "run control")
    control.add_argument("--host", type=options.non_empty, default=defaults.DEFAULT_HOST,
                         help="address to listen on (0.0.0.0: every interface)")
    control.add_argument("--port", type=port_number, default=defaults.DEFAULT_PORT, help="TCP port to listen on")
    control.add_argument("--max-queue", type=options.integer(1), default=defaults.MAX_QUEUE,
                         help="requests that may wait for the model; more are answered 429 with Retry-After")
    control.add_argument("--max-upload-mb", type=options.positive, default=defaults.MAX_UPLOAD_MB,
                         help="largest upload accepted; larger ones are answered 413")
    control.add_argument("--drain-seconds", type=options.non_negative, default=defaults.DRAIN_SECONDS,
                         help="on SIGTERM, how long the requests in flight may take to finish")
    control.add_argument("--debug", action="store_true", help="show tracebacks and uvicorn's debug log")
    return parser


def port_number(text: str) -> int:
    port = options.integer(0)(text)
    if port > 65535:
        import argparse

        raise argparse.ArgumentTypeError(f"{text}: must be at most 65535")
    return port


def serve_command(args) -> int:
    missing = [name for name in SERVE_PACKAGES if not _importable(name)]
    if missing:
        from common.errors import SetupError

        raise SetupError(f"the server needs {', '.join(missing)}: pip install -r requirements-serve.txt")
    from common.ranks.world import World
    from common.serve.server import serve

    choice = cli.select_device(args.device, dtype=args.dtype, ranks=World(), threads=args.threads)
    settings = defaults.ServeSettings(
        model=args.model, device=choice.device, dtype=args.dtype, loader=args.loader,
        model_names=tuple(args.model_name or ()), host=args.host, port=args.port,
        max_batch_seconds=args.max_batch_seconds, max_batch_files=args.max_batch_files, max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue, max_upload_mb=args.max_upload_mb, drain_seconds=args.drain_seconds)
    return serve(settings, choice.device, cli.say, debug=args.debug)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), argv, __file__, serve_command)


if __name__ == "__main__":
    sys.exit(main())
