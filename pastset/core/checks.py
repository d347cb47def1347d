"""Checks of what callers pass to element operations (templates, indices, delta)."""

from __future__ import annotations

from collections.abc import Hashable

from pastset.errors import PastSetTypeError, PastSetValueError

__all__ = ["check_delta", "check_index", "check_template", "template_key"]


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
        if not isinstance(part, Hashable) or isinstance(part, (list, dict, set)):
            raise PastSetTypeError(
                f"template position {i} holds a {type(part).__name__}, which cannot name an element; "
                "use types and hashable constants (str, int, tuple, ...)"
            )
    return template


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
