"""Checks of what callers pass to element operations (templates, indices, delta, timeouts)."""

from __future__ import annotations

import threading

from pastset.errors import PastSetTypeError, PastSetValueError

__all__ = ["TIMEOUT_MAX", "check_delta", "check_index", "check_template", "check_timeout", "template_key"]


def check_template(template: object) -> tuple:
    """Return ``template`` if it can name an element, else raise PastSetTypeError.

    A template is a tuple of types and constants; constants must be hashable
    because equal templates must find the same element.
    """
    if not isinstance(template, tuple):
        raise PastSetTypeError(
            f"a template must be a tuple such as ('name', int, float), got {type(template).__name__}"
        )
    for i, part in enumerate(template):
        if not _hashable(part) or isinstance(part, (list, dict, set)):
            raise PastSetTypeError(
                f"template position {i} holds a {type(part).__name__}, which cannot name an element; "
                "use types and hashable constants (str, int, tuple, ...)"
            )
        if _has_nan(part):
            raise PastSetValueError(
                f"template position {i} holds NaN ({part!r}), which is never equal to itself, so no two "
                "enters would find the same element; use a type (float) or another constant"
            )
    return template


def _hashable(part: object) -> bool:
    """True if ``part`` can be hashed: a tuple is Hashable as a type, but not if it holds a list."""
    try:
        hash(part)
    except TypeError:
        return False
    return True


def _has_nan(part: object) -> bool:
    """True if a template constant is or holds a NaN (which equals nothing, itself included)."""
    if isinstance(part, (float, complex)):
        return part != part
    if isinstance(part, (tuple, frozenset)):
        return any(_has_nan(x) for x in part)
    return False


#: Longest timeout a wait can take (the platform's limit for a lock's wait).
TIMEOUT_MAX = threading.TIMEOUT_MAX


def check_timeout(timeout: object) -> float | None:
    """Return a timeout as float seconds or None; PastSetTypeError/PastSetValueError for anything else."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise PastSetTypeError(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
    try:
        seconds = float(timeout)
    except OverflowError:
        seconds = float("inf")
    if seconds != seconds or seconds > TIMEOUT_MAX:
        raise PastSetValueError(
            f"timeout must be a finite number of seconds up to {TIMEOUT_MAX:.0f}, or None to wait as long as it "
            f"takes; got {timeout!r:.40}"
        )
    return seconds


def template_key(template: tuple) -> tuple:
    """A key under which equal templates meet and ``1`` differs from ``True`` and ``1.0``."""
    return tuple((part.__class__, part) for part in template)


def check_index(index: object) -> int:
    """Return ``index`` as an int, or raise PastSetTypeError for a non-integer."""
    if isinstance(index, bool) or not isinstance(index, int):
        try:
            import numbers

            if isinstance(index, numbers.Integral) and not isinstance(index, bool):
                return int(index)
        except ImportError:  # pragma: no cover
            pass
        raise PastSetTypeError(
            f"an index must be an integer (or negative for the next unobserved tuple), "
            f"got {type(index).__name__} {index!r}"
        )
    return index


def check_delta(value: object) -> int | None:
    """Return a delta as int or None; raise PastSetTypeError for non-numbers."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PastSetTypeError(
            f"delta must be a number (0 or negative for unbounded), got {type(value).__name__} {value!r}"
        )
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PastSetValueError(f"delta must be finite, got {value!r}")
        if not value.is_integer():
            raise PastSetValueError(f"delta counts tuples and must be whole, got {value!r}")
    return int(value)
