"""What the codec knows: its extension kinds, the type objects it carries, its limits and their errors.

Also how a NumPy dtype is described on the wire (structured arrays keep
their field names and layout exactly, or are refused before anything is sent).
The encoder (:mod:`pastset.wire.encoding`) and the decoder
(:mod:`pastset.wire.decoding`) share these, so that both sides refuse the same.
"""

from __future__ import annotations

import builtins
import struct
import sys
import types
from typing import Any

from pastset.errors import SerialisationError


def _numpy() -> Any:
    """NumPy if this process has imported it, else None.

    A value can only be a NumPy array if its program imported NumPy, so the
    codec never imports it to send: starting a process (every spawned task
    imports pastset) does not pay NumPy's import time.
    """
    return sys.modules.get("numpy")


def _need_numpy() -> Any:
    """NumPy, imported now, to rebuild an array or type that arrived; SerialisationError without it."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - exercised only without numpy
        raise SerialisationError("received a NumPy array, but NumPy is not installed on this side") from None
    _TYPES.setdefault("numpy.ndarray", numpy.ndarray)
    _TYPE_NAMES.setdefault(numpy.ndarray, "numpy.ndarray")
    return numpy


#: Deepest nesting of containers (tuple, list, dict, set, frozenset, array) a value may have.
MAX_DEPTH = 100

#: Members of one set (or keys of one dict) that may share a hash with another member
#: before the set is refused as an attempt to make the receiver's work quadratic.
MAX_COLLISIONS = 256

# Extension frames this shallow are decoded with msgpack.unpackb (no copy of the
# data; ~40 KiB of C stack each), deeper ones with a heap-allocated Unpacker.
_SHALLOW = 4

_TUPLE, _TYPE, _COMPLEX, _SET, _FROZENSET, _NDARRAY, _BIGINT, _NDARRAY_OOB, _BYTES_OOB = range(1, 10)

#: Arrays, and ``bytes`` fields of a tuple, of at least this many bytes go out of band with :func:`encode_parts`.
OUT_OF_BAND = 32 * 1024

# An out-of-band buffer's number, in the payload of a bytes field sent beside the body.
_INDEX = struct.Struct("<I")

_TYPES: dict[str, type] = {
    t.__name__: t for t in (int, float, complex, str, bytes, bytearray, bool, tuple, list, dict, set, frozenset, object)
}
_TYPES["NoneType"] = type(None)
_TYPE_NAMES = {t: name for name, t in _TYPES.items()}

SUPPORTED = (
    "None, bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset, "
    "the type objects " + ", ".join(sorted(_TYPES)) + ", numpy.ndarray, the built-in functions (len, id, ...), "
    "and NumPy arrays (with NumPy installed)"
)

#: A built-in function travels by name (``builtins.id``), as pickle sends it, and is looked up
#: among the built-in functions only on the other side: nothing is imported or run.
_BUILTIN_PREFIX = "builtins."


def _builtin_name(obj: Any) -> str | None:
    """``builtins.NAME`` if ``obj`` is the built-in function of that name, else None."""
    name = getattr(obj, "__name__", None)
    if type(obj) is types.BuiltinFunctionType and isinstance(name, str) and getattr(builtins, name, None) is obj:
        return _BUILTIN_PREFIX + name
    return None


def _builtin(name: str) -> Any:
    """The built-in function a received ``builtins.NAME`` stands for; SerialisationError for anything else."""
    obj = getattr(builtins, name[len(_BUILTIN_PREFIX) :], None)
    if type(obj) is not types.BuiltinFunctionType:
        raise SerialisationError(f"received {name!r}, which is not a built-in function")
    return obj


class _BigInt:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


def _too_deep(depth: int | None = None) -> SerialisationError:
    found = f"{depth} levels" if depth is not None else f"more than {MAX_DEPTH} levels"
    err = SerialisationError(
        f"a value nests {found} deep (tuples, lists, dicts and sets each count one); the limit is "
        f"{MAX_DEPTH} (pastset.wire.MAX_DEPTH): flatten the value"
    )
    err.too_deep = True  # type: ignore[attr-defined]
    return err


def _depth(obj: Any) -> int:
    """How deep ``obj`` nests containers, walked without recursion (only to name it in an error)."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, (tuple, list, set, frozenset)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _too_many_digits(value: int) -> SerialisationError:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
    return SerialisationError(
        f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits cannot be sent; the limit is "
        f"{limit} digits (sys.get_int_max_str_digits()): send it as bytes (int.to_bytes) or a str"
    )


def _refuse(obj: object) -> SerialisationError:
    return SerialisationError(
        f"a value of type {type(obj).__module__}.{type(obj).__qualname__} cannot be sent to the "
        f"PastSet server; convert it to one of: {SUPPORTED}"
    )


def _dtype_spec(dt: Any) -> Any:
    """How a dtype travels: its ``str`` for a plain one; names, formats, offsets and itemsize for a structured one."""
    if dt.names is None:
        if dt.subdtype is not None:  # only as a field; a subarray dtype of an array becomes its shape
            base, shape = dt.subdtype
            if base.names is not None or base.subdtype is not None:
                raise _structured_refused("a field that is an array of structures")
            return [base.str, list(shape)]
        return dt.str
    formats = []
    offsets = []
    for name in dt.names:
        field = dt.fields[name]
        if len(field) > 2:
            raise _structured_refused(f"the field {name!r} has a title")
        if field[0].names is not None:
            raise _structured_refused(f"the field {name!r} is itself structured")
        formats.append(_dtype_spec(field[0]))
        offsets.append(field[1])
    return {"names": list(dt.names), "formats": formats, "offsets": offsets, "itemsize": dt.itemsize}


def _structured_refused(why: str) -> SerialisationError:
    return SerialisationError(
        f"this NumPy structured array cannot be sent: {why}; use flat fields of plain dtypes "
        "(numbers, bytes, fixed-size str, or subarrays of those)"
    )


def _dtype_from(spec: Any) -> Any:
    """The dtype a spec made by :func:`_dtype_spec` describes; SerialisationError for anything else."""
    np = _need_numpy()
    try:
        if isinstance(spec, str):
            dt = np.dtype(spec)
        elif isinstance(spec, dict) and set(spec) == {"names", "formats", "offsets", "itemsize"}:
            formats = spec["formats"]
            if not isinstance(formats, list) or not all(_is_format(f) for f in formats):
                raise TypeError("bad field formats")
            formats = [f if isinstance(f, str) else (f[0], tuple(f[1])) for f in formats]
            dt = np.dtype({**spec, "formats": formats})
        else:
            raise TypeError("not a dtype")
    except (TypeError, ValueError, KeyError) as err:
        raise SerialisationError(f"received an array of an unknown dtype: {err}") from None
    if dt.hasobject:
        raise SerialisationError("refusing a NumPy array of Python objects from the network")
    return dt


def _is_format(f: Any) -> bool:
    if isinstance(f, str):
        return True
    return (
        isinstance(f, list)
        and len(f) == 2
        and isinstance(f[0], str)
        and isinstance(f[1], list)
        and all(type(n) is int for n in f[1])
    )
