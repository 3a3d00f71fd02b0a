"""Ctrl-C and SIGTERM as exceptions that wait for a critical section (a batch's records being
written) to end. Python runs signal handlers in the main thread, so a handler that defers is
reliable even when other threads (torch, tqdm) are the ones the kernel interrupts; blocking
the signal with pthread_sigmask would not be."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Callable, Optional

from .errors import Terminated

_held = 0
_pending: list[int] = []


def _exception_for(signum: int) -> BaseException:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame) -> None:
    if _held:
        _pending.append(signum)
        return
    raise _exception_for(signum)


def install() -> Callable[[], None]:
    """Route SIGINT and SIGTERM through the deferring handler; returns what restores the old ones."""
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(s, h) for s, h in previous.items()]


@contextmanager
def deferred():
    """Inside the block a signal only takes note; it is raised once the block has finished."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending:
            signum = _pending.pop(0)
            _pending.clear()
            raise _exception_for(signum)


def interruption(error: BaseException) -> Optional[BaseException]:
    """The Ctrl-C or SIGTERM behind `error`, if one is in its chain: a signal that lands inside a
    library's try/finally (NeMo's transcribe() unfreezing what it had not frozen yet) can come
    out as that library's own exception, which per-file isolation must not swallow."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def raise_unless_per_file(error: BaseException, debug: bool) -> None:
    """Inside a per-file `except`: re-raise what must stop the run (a Ctrl-C or SIGTERM behind
    `error`, or any error under --debug); return when `error` is that file's alone."""
    signal_error = interruption(error)
    if signal_error is not None:
        raise signal_error from error
    if debug:
        raise error
