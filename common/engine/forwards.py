"""Changing what a module's forward() does for the length of a block, without touching NeMo."""

from __future__ import annotations

import contextlib
from typing import Callable


@contextlib.contextmanager
def wrapped_forward(module, wrap: Callable[[Callable], Callable]):
    """Inside the block `module.forward` is `wrap(forward as it was)`; after it, what it was: the
    class's own method, or a forward someone else set on the instance (another block's)."""
    original, own = module.forward, vars(module).get("forward")
    module.forward = wrap(original)
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own
