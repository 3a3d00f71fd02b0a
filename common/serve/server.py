"""serve.py's run: check the address, start the worker (it loads the model and warms it up
while /health already answers), serve HTTP with uvicorn until SIGTERM or Ctrl-C, then drain:
uvicorn stops accepting and waits up to --drain-seconds for the requests in flight (the worker
runs their batches meanwhile), the worker ends, and the process exits 0 (130 after Ctrl-C)."""

from __future__ import annotations

import signal
import socket
from typing import Callable

from ..errors import SetupError
from .settings import ServeSettings

# Ctrl-C ends the server with the scripts' exit status for it; SIGTERM (a service manager's
# stop) is the server's normal end.
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 0}


def check_address(host: str, port: int) -> None:
    """The port must be free before the model loads (a minute on a big model) only to fail binding."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(info[0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(info[4])
    except OSError as error:
        raise SetupError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None


def model_loader(settings: ServeSettings, device: str) -> Callable[[], object]:
    def load():
        from ..api import load_model

        return load_model(settings.model, device=device, dtype=settings.dtype, loader=settings.loader)

    return load


def serve(settings: ServeSettings, device: str, say: Callable[[str], None], debug: bool = False) -> int:
    """Serve until stopped; returns the exit status. A model that fails to load ends the server
    with its error (raised here, after uvicorn has closed)."""
    import uvicorn

    from ..model.loading import default_model_spec, resolve_model_source
    from .app import create_app
    from .metrics import Metrics
    from .worker import Worker

    check_address(settings.host, settings.port)
    spec = settings.model or default_model_spec()
    resolve_model_source(spec)  # a spec that names nothing fails here, before the server starts
    names = settings.model_names or (spec,)
    metrics = Metrics(device)
    server: uvicorn.Server
    worker = Worker(model_loader(settings, device), settings, metrics, on_failure=lambda: _stop(server))
    config = uvicorn.Config(create_app(settings, worker, metrics, names), host=settings.host, port=settings.port,
                            lifespan="off", log_level="debug" if debug else "info",
                            timeout_graceful_shutdown=settings.drain_seconds)
    server = uvicorn.Server(config)
    received: list[int] = []
    # uvicorn re-raises the signal that stopped it to the handler it found; the server's drained
    # exit is its answer to that signal, so that handler only takes note.
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in SIGNAL_EXIT}
    try:
        worker.start()
        say(f"serving {', '.join(names)} on http://{settings.host}:{settings.port} ({device}); "
            "ready once the model has loaded and warmed up (GET /ready)")
        server.run()
    finally:
        worker.stop(settings.drain_seconds)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if worker.error is not None:
        raise worker.error
    return SIGNAL_EXIT.get(received[0], 0) if received else 0


def _stop(server) -> None:
    server.should_exit = True
