"""The wire codec: what a PastSet value looks like in bytes.

Pyro5 carries our messages as opaque ``bytes`` (with its msgpack serializer, which
passes bytes through without copying them into text).  Inside those bytes we use
msgpack with extension types so that what arrives is what was sent: tuples stay
tuples (nested ones too), templates keep their Python type objects, sets, complex
numbers, big integers and NumPy arrays survive.  NumPy arrays travel as their raw
buffer (``tobytes``/``frombuffer``), never element by element.

:func:`encode_parts` / :func:`decode_parts` are the same codec with large arrays
*out of band*: the message body refers to them by number and their memory
travels beside it, so a transport that can send several buffers (the direct
channel, :mod:`pastset.transport.channel`) never copies a large array into the message
nor out of it again.

Nothing here ever unpickles: a type object is sent by name and looked up in a
fixed table, so bytes from the network can only ever produce plain data.
Anything the codec does not know is refused on the sending side with a
:class:`~pastset.errors.SerialisationError` that names the value's type.
"""

from __future__ import annotations

import struct
import sys
import threading
from typing import Any

import msgpack

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


__all__ = ["OUT_OF_BAND", "SUPPORTED", "decode", "decode_parts", "encode", "encode_parts"]

_TUPLE, _TYPE, _COMPLEX, _SET, _FROZENSET, _NDARRAY, _BIGINT, _NDARRAY_OOB = range(1, 9)

#: Arrays of at least this many bytes go out of band with :func:`encode_parts`.
OUT_OF_BAND = 32 * 1024

_TYPES: dict[str, type] = {
    t.__name__: t for t in (int, float, complex, str, bytes, bytearray, bool, tuple, list, dict, set, frozenset, object)
}
_TYPES["NoneType"] = type(None)
_TYPE_NAMES = {t: name for name, t in _TYPES.items()}

SUPPORTED = (
    "None, bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset, "
    "the type objects " + ", ".join(sorted(_TYPES)) + ", numpy.ndarray, and NumPy arrays (with NumPy installed)"
)


class _BigInt:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


def _refuse(obj: object) -> SerialisationError:
    return SerialisationError(
        f"a value of type {type(obj).__module__}.{type(obj).__qualname__} cannot be sent to the "
        f"PastSet server; convert it to one of: {SUPPORTED}"
    )


def _default(obj: Any) -> Any:
    # Called by msgpack for everything it does not pack natively (strict types).
    if type(obj) is tuple:
        return msgpack.ExtType(_TUPLE, _pack(list(obj)))
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
    if isinstance(obj, (set, frozenset)):
        code = _SET if isinstance(obj, set) else _FROZENSET
        return msgpack.ExtType(code, _pack(list(obj)))
    if isinstance(obj, _BigInt):
        return msgpack.ExtType(_BIGINT, str(obj.value).encode())
    _np = _numpy()
    if _np is not None:
        if isinstance(obj, _np.ndarray):
            if obj.dtype.hasobject:
                raise SerialisationError(
                    "a NumPy array of Python objects (dtype=object) cannot be sent; use a numeric dtype"
                )
            arr = _np.ascontiguousarray(obj)
            buf = memoryview(arr).cast("B") if arr.size else b""  # type: ignore[arg-type]
            beside = getattr(_local, "oob", None)
            if beside is not None and arr.nbytes >= OUT_OF_BAND:
                beside.append(buf)
                return msgpack.ExtType(_NDARRAY_OOB, _pack([arr.dtype.str, list(arr.shape), len(beside) - 1]))
            return msgpack.ExtType(_NDARRAY, _pack([arr.dtype.str, list(arr.shape), buf]))
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


_local = threading.local()


def _pack(obj: Any) -> bytes:
    # Building a Packer costs ~15 us, using one ~1 us: keep one per thread and
    # nesting depth (an extension's payload is packed while its parent packs).
    try:
        packers = _local.packers
    except AttributeError:
        packers = _local.packers = []
        _local.depth = 0
    depth = _local.depth
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
        return _pack(obj)
    except SerialisationError:
        raise
    except OverflowError:
        beside = getattr(_local, "oob", None)
        if beside is not None:
            beside.clear()  # the first attempt's arrays; packed again below
        return _pack(_bigints(obj))
    except (TypeError, ValueError) as err:
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


def decode_parts(body: bytes, buffers: list[Any]) -> Any:
    """Decode what :func:`encode_parts` made; arrays are views of ``buffers`` (writable if they are)."""
    saved = getattr(_local, "buffers", None)
    _local.buffers = buffers
    try:
        return decode(body)
    finally:
        _local.buffers = saved


def _ext(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _TYPE:
        name = data.decode()
        if name == "numpy.ndarray":
            return _need_numpy().ndarray
        try:
            return _TYPES[name]
        except KeyError:
            raise SerialisationError(
                f"received the type {name!r}, which is not known on this side (is NumPy installed?)"
            ) from None
    if code == _COMPLEX:
        real, imag = struct.unpack("<dd", data)
        return complex(real, imag)
    if code == _SET:
        return set(_unpack(data))
    if code == _FROZENSET:
        return frozenset(_unpack(data))
    if code == _BIGINT:
        return int(data)
    if code == _NDARRAY:
        _np = _need_numpy()
        dtype, shape, buf = _unpack(data)
        dt = _np.dtype(dtype)
        if dt.hasobject:
            raise SerialisationError("refusing a NumPy array of Python objects from the network")
        return _np.frombuffer(buf, dtype=dt).reshape(shape).copy()
    if code == _NDARRAY_OOB:
        _np = _need_numpy()
        dtype, shape, number = _unpack(data)
        buffers = getattr(_local, "buffers", None) or []
        if not isinstance(number, int) or not 0 <= number < len(buffers):
            raise SerialisationError("a message refers to an array buffer that did not come with it")
        dt = _np.dtype(dtype)
        if dt.hasobject:
            raise SerialisationError("refusing a NumPy array of Python objects from the network")
        return _np.frombuffer(buffers[number], dtype=dt).reshape(shape)
    raise SerialisationError(f"received an unknown value kind ({code}); are both sides the same pastset version?")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, ext_hook=_ext, strict_map_key=False, use_list=True)


def decode(data: bytes) -> Any:
    """Decode bytes produced by :func:`encode`; malformed input raises SerialisationError."""
    try:
        return _unpack(data)
    except SerialisationError:
        raise
    except Exception as err:
        raise SerialisationError(f"malformed message: {err}") from err
