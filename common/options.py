"""Option values checked while argparse reads the command line (its `type=` functions), so that a
bad value is one line and exit 2 before torch or NeMo is imported.

Each function returns the parsed value or raises argparse.ArgumentTypeError("VALUE: problem");
the parser prints that after the option's name: `--runs 0: must be at least 1`.
Imports only the standard library (the bottom layer, with errors and files).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Iterable


def _bad(text: str, problem: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{text}: {problem}")


def integer(minimum: int) -> Callable[[str], int]:
    """An int of at least `minimum` (batch sizes and --runs: 1, --warmup: 0)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _bad(repr(text), "not an integer") from None
        if value < minimum:
            raise _bad(text, f"must be at least {minimum}")
        return value
    return parse


def _finite(text: str) -> float:
    # float() accepts 'nan' and 'inf': a NaN threshold makes every comparison False, so a gate would pass.
    try:
        value = float(text)
    except ValueError:
        raise _bad(repr(text), "not a number") from None
    if not math.isfinite(value):
        raise _bad(text, "must be a finite number")
    return value


def positive(text: str) -> float:
    """A finite float > 0 (durations in seconds)."""
    value = _finite(text)
    if value <= 0:
        raise _bad(text, "must be greater than 0")
    return value


def non_negative(text: str) -> float:
    """A finite float >= 0 (--max-wer)."""
    value = _finite(text)
    if value < 0:
        raise _bad(text, "must be at least 0")
    return value


def fraction(text: str) -> float:
    """A finite float in [0, 1] (--min-match)."""
    value = _finite(text)
    if not 0.0 <= value <= 1.0:
        raise _bad(text, "must be between 0 and 1")
    return value


def count_or_fraction(text: str):
    """--limit: an int of at least 1 (that many), or a fraction strictly between 0 and 1 (that share)."""
    try:
        return integer(1)(text)
    except argparse.ArgumentTypeError:
        pass
    value = _finite(text)
    if not 0.0 < value < 1.0:
        raise _bad(text, "must be a whole number of at least 1 or a fraction between 0 and 1")
    return value


def non_empty(text: str) -> str:
    """A string that is not blank (paths and names: '' would silently mean 'the default' or '.')."""
    if not text.strip():
        raise _bad(repr(text), "must not be empty")
    return text


def choice(names: Iterable[str]) -> Callable[[str], str]:
    """One of `names`, said with the value as typed (argparse's own message quotes differently)."""
    names = tuple(names)

    def parse(text: str) -> str:
        if text not in names:
            raise _bad(repr(text), f"not one of {', '.join(names)}")
        return text
    return parse


def comma_list(item: Callable[[str], object]) -> Callable[[str], list]:
    """'a,b,c' -> [item('a'), item('b'), item('c')]; an empty list or an empty item is an error,
    not silently dropped ('nemo,' is more likely a typo than a request for one engine)."""
    def parse(text: str) -> list:
        parts = [part.strip() for part in text.split(",")]
        if not any(parts):
            raise _bad(repr(text), "must not be empty; give a comma-separated list")
        if not all(parts):
            raise _bad(repr(text), "has an empty item; give a comma-separated list without empty entries")
        return [item(part) for part in parts]
    return parse
