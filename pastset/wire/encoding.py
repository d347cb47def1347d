"""Encoding: Python values to msgpack with the codec's extension kinds, large values out of band.

msgpack packs what it knows natively (strict types) and calls :func:`_default`
for the rest: tuples, sets, complex numbers, type objects, big integers, NumPy
arrays, and the large ``bytes`` that go beside the body.  With
:func:`encode_parts` the large arrays and bytes are not copied into the message
but listed beside it, as views of their own memory.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import msgpack

from pastset.errors import SerialisationError
from pastset.wire.held import HeldBytes, _Beside, _beside
from pastset.wire.kinds import (
    _BIGINT,
    _BYTES_OOB,
    _COMPLEX,
    _FROZENSET,
    _INDEX,
    _NDARRAY,
    _NDARRAY_OOB,
    _SET,
    _TUPLE,
    _TYPE,
    _TYPE_NAMES,
    _TYPES,
    MAX_DEPTH,
    OUT_OF_BAND,
    _BigInt,
    _builtin_name,
    _depth,
    _dtype_spec,
    _numpy,
    _refuse,
    _too_deep,
    _too_many_digits,
)


def _default(obj: Any) -> Any:
    # Called by msgpack for everything it does not pack natively (strict types).
    if type(obj) is tuple:
        beside = _local.oob
        mark = 0 if beside is None else len(beside)
        packed = _pack(list(obj))
        # Packing first costs a small tuple nothing more; a large one is packed
        # again with its large bytes beside the message (in this process only:
        # the server's own large values are HeldBytes, which never take this path).
        if beside is not None and len(packed) >= OUT_OF_BAND:
            marked = _beside(obj)
            if marked is not None:
                del beside[mark:]  # the arrays the first packing put beside: packed again
                packed = _pack(marked)
        return msgpack.ExtType(_TUPLE, packed)
    if type(obj) is HeldBytes or type(obj) is _Beside:
        view = obj.view if isinstance(obj, HeldBytes) else memoryview(obj.value)
        beside = _local.oob
        if beside is None:
            return view.tobytes()  # in band (Pyro5, the journal): a plain bin
        beside.append(view)
        return msgpack.ExtType(_BYTES_OOB, _INDEX.pack(len(beside) - 1))
    if isinstance(obj, type):
        name = _TYPE_NAMES.get(obj)
        np = _numpy()
        if name is None and np is not None and obj is np.ndarray:
            name = "numpy.ndarray"
        if name is None:
            raise SerialisationError(
                f"the type {obj.__module__}.{obj.__qualname__} cannot be sent (in a template, say); "
                f"supported type objects are: {', '.join(sorted(_TYPES))}"
            )
        return msgpack.ExtType(_TYPE, name.encode())
    if isinstance(obj, complex):
        return msgpack.ExtType(_COMPLEX, struct.pack("<dd", obj.real, obj.imag))
    builtin = _builtin_name(obj)
    if builtin is not None:
        return msgpack.ExtType(_TYPE, builtin.encode())
    if isinstance(obj, (set, frozenset)):
        code = _SET if isinstance(obj, set) else _FROZENSET
        return msgpack.ExtType(code, _pack(list(obj)))
    if isinstance(obj, _BigInt):
        try:
            digits = str(obj.value)
        except ValueError:
            raise _too_many_digits(obj.value) from None
        return msgpack.ExtType(_BIGINT, digits.encode())
    _np = _numpy()
    if _np is not None:
        if isinstance(obj, _np.ndarray):
            if obj.dtype.hasobject:
                raise SerialisationError(
                    "a NumPy array of Python objects (dtype=object) cannot be sent; use a numeric dtype"
                )
            arr = _np.ascontiguousarray(obj)
            spec = _dtype_spec(arr.dtype)
            if not arr.size:
                buf: Any = b""
            elif arr.dtype.names is not None:  # a structured array's bytes, its layout travels in spec
                buf = memoryview(arr.reshape(-1).view(_np.uint8))
            else:
                buf = memoryview(arr).cast("B")  # type: ignore[arg-type]
            beside = _local.oob
            if beside is not None and arr.nbytes >= OUT_OF_BAND:
                beside.append(buf)
                return msgpack.ExtType(_NDARRAY_OOB, _pack([spec, list(arr.shape), len(beside) - 1]))
            return msgpack.ExtType(_NDARRAY, _pack([spec, list(arr.shape), buf]))
        if isinstance(obj, _np.generic):
            return obj.item()
    # Subclasses of the native types (IntEnum, OrderedDict, str subclasses ...)
    for base in (bool, int, float, str, bytes, list, dict):
        if isinstance(obj, base):
            return base(obj)  # type: ignore[arg-type]
    if isinstance(obj, tuple):  # namedtuple and other tuple subclasses
        return msgpack.ExtType(_TUPLE, _pack(list(obj)))
    if isinstance(obj, bytearray):
        return bytes(obj)
    raise _refuse(obj)


def _bigints(obj: Any) -> Any:
    """Rebuild ``obj`` with integers beyond 64 bits wrapped (msgpack's slow path)."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        return _BigInt(obj) if not -(2**63) <= obj < 2**64 else obj
    if isinstance(obj, tuple):
        return tuple(_bigints(x) for x in obj)
    if isinstance(obj, list):
        return [_bigints(x) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_bigints(x) for x in obj)
    if isinstance(obj, dict):
        return {_bigints(k): _bigints(v) for k, v in obj.items()}
    return obj


class _PerThread(threading.local):
    """This thread's packers and out-of-band list; class defaults spare a failing lookup per tuple."""

    oob: list[bytes | memoryview] | None = None
    packers: list[msgpack.Packer] | None = None
    depth = 0


_local = _PerThread()


def _pack(obj: Any) -> bytes:
    # Building a Packer costs ~15 us, using one ~1 us: keep one per thread and
    # nesting depth (an extension's payload is packed while its parent packs).
    packers = _local.packers
    if packers is None:
        packers = _local.packers = []
    depth = _local.depth
    if depth > MAX_DEPTH:
        raise _too_deep()
    if depth == len(packers):
        packers.append(msgpack.Packer(use_bin_type=True, strict_types=True, default=_default))
    _local.depth = depth + 1
    try:
        return packers[depth].pack(obj)
    except BaseException:
        packers[depth] = msgpack.Packer(use_bin_type=True, strict_types=True, default=_default)
        raise
    finally:
        _local.depth = depth


def encode(obj: Any) -> bytes:
    """Encode ``obj`` to bytes or raise SerialisationError naming what cannot be sent."""
    try:
        return _encode(obj)
    except SerialisationError as err:
        if getattr(err, "too_deep", False):
            raise _too_deep(_depth(obj)) from None
        raise


def _encode(obj: Any) -> bytes:
    try:
        return _pack(obj)
    except SerialisationError:
        raise
    except OverflowError:
        beside = _local.oob
        if beside is not None:
            beside.clear()  # the first attempt's arrays; packed again below
        try:
            return _pack(_bigints(obj))
        except SerialisationError:
            raise
        except RecursionError:
            raise _too_deep() from None
        except (TypeError, ValueError) as err:
            raise SerialisationError(f"cannot encode value for the PastSet server: {err}") from err
    except RecursionError:
        raise _too_deep() from None
    except ValueError as err:
        if "recursion limit" in str(err):  # msgpack's own limit on lists and dicts (511 levels)
            raise _too_deep() from None
        raise SerialisationError(f"cannot encode value for the PastSet server: {err}") from err
    except TypeError as err:
        raise SerialisationError(f"cannot encode value for the PastSet server: {err}") from err


def encode_parts(obj: Any) -> list[bytes | memoryview]:
    """Encode ``obj`` as ``[body, buffer, ...]``: arrays of OUT_OF_BAND bytes or more ride beside the body.

    The buffers are views of the arrays' own memory (nothing is copied); send
    them before the arrays change.
    """
    beside: list[bytes | memoryview] = []
    _local.oob = beside
    try:
        body = encode(obj)
    finally:
        _local.oob = None
    return [body, *beside]
