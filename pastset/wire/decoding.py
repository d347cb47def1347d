"""Decoding within the limits: nesting counted two ways, colliding hashes refused, nothing unpickled.

Every message and every extension's payload is a msgpack document of its own;
:class:`_Decoding` holds one message's state while it is taken apart (see its
docstring for how depth is bounded without ever overflowing a C stack).
"""

from __future__ import annotations

import struct
import sys
from itertools import chain, compress, repeat
from typing import Any

import msgpack

from pastset.errors import SerialisationError
from pastset.wire.held import HeldBytes
from pastset.wire.kinds import (
    _BIGINT,
    _BUILTIN_PREFIX,
    _BYTES_OOB,
    _COMPLEX,
    _FROZENSET,
    _INDEX,
    _NDARRAY,
    _NDARRAY_OOB,
    _SET,
    _SHALLOW,
    _TUPLE,
    _TYPE,
    _TYPES,
    MAX_COLLISIONS,
    MAX_DEPTH,
    _builtin,
    _dtype_from,
    _need_numpy,
    _too_deep,
)


def decode_parts(body: bytes, buffers: list[Any], *, hold: bool = False) -> Any:
    """Decode what :func:`encode_parts` made; arrays are views of ``buffers`` (writable if they are).

    Out-of-band ``bytes`` are copied out of their buffer once, as plain
    ``bytes``, or not at all with ``hold`` (the server): as :class:`HeldBytes`,
    which :func:`encode_parts` sends on from the same memory.
    """
    return decode(body, buffers, hold=hold)


def decode(data: bytes, buffers: list[Any] | None = None, *, hold: bool = False) -> Any:
    """Decode bytes produced by :func:`encode`; malformed or too deeply nested input raises SerialisationError."""
    try:
        decoding = _Decoding(data, buffers, hold)
        obj = decoding.frame(data)
        if decoding.large and type(obj) in _CONTAINERS:
            _measure(obj)
        return obj
    except SerialisationError:
        raise
    except (RecursionError, msgpack.StackError):
        raise _too_deep() from None
    except Exception as err:
        raise SerialisationError(f"malformed message: {err}") from err


_unpackb = msgpack.unpackb


def _check_hashes(items: list, what: str) -> None:
    """Refuse members whose hashes collide en masse: building the set or dict would take quadratic time."""
    try:
        collisions = len(items) - len(set(map(hash, items)))
    except TypeError as err:
        raise SerialisationError(f"malformed message: {err}") from None
    if collisions > MAX_COLLISIONS:
        raise SerialisationError(
            f"refusing {what} of which {collisions} share a hash with another (the limit is "
            f"{MAX_COLLISIONS}): such values make building a set or dict take quadratic time"
        )


def _no_ext(code: int, data: bytes) -> Any:
    raise SerialisationError("malformed message: an array's description holds a nested value")


def _array_parts(data: bytes) -> tuple[Any, tuple[int, ...], Any]:
    """An array's dtype, shape and third part (buffer or number), from a payload that may nest nothing."""
    parts = msgpack.unpackb(data, raw=False, ext_hook=_no_ext, strict_map_key=False)
    if not isinstance(parts, list) or len(parts) != 3:
        raise SerialisationError("malformed message: a bad array header")
    spec, shape, third = parts
    if not isinstance(shape, list) or not all(type(n) is int for n in shape):
        raise SerialisationError("malformed message: a bad array shape")
    return _dtype_from(spec), tuple(shape), third


def _pairs(pairs: list[tuple[Any, Any]]) -> dict:
    """A dict from a map's pairs, once its keys are known not to collide en masse (before it is built)."""
    if len(pairs) > MAX_COLLISIONS:
        _check_hashes([key for key, _ in pairs], "dict keys")
    return dict(pairs)


_EXT_KINDS = frozenset((tuple, set, frozenset))
_NATIVE_KINDS = frozenset((list, dict))
_CONTAINERS = _EXT_KINDS | _NATIVE_KINDS
_JUST_TUPLES = {tuple}


def _measure(root: Any) -> int:
    """The depth of a decoded value (each tuple, list, dict, set and frozenset counts one); too deep raises.

    Walked without recursion, level by level.  Where every container among a
    node's children holds no container itself (a list of flat tuples: a bag of
    tasks), the whole level is checked in one pass at C speed, so the common
    large message costs a fraction of a microsecond a tuple.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            raise _too_deep()
        deepest = max(deepest, level)
        children: Any = [*node, *node.values()] if type(node) is dict else node
        kinds = set(map(type, children))
        if kinds.isdisjoint(_CONTAINERS):
            continue
        if kinds == _JUST_TUPLES:
            inner = children
        else:
            inner = list(compress(children, map(_CONTAINERS.__contains__, map(type, children))))
        if dict not in kinds and _CONTAINERS.isdisjoint(map(type, chain.from_iterable(inner))):
            if level + 1 > MAX_DEPTH:
                raise _too_deep()
            deepest = max(deepest, level + 1)
            continue
        stack.extend(zip(inner, repeat(level + 1)))
    return deepest


class _Decoding:
    """The state of decoding one message.

    Depth is counted twice: top-down as extension frames open (``depth``, which
    bounds the C recursion, since each frame is a nested decoder call), and over
    the whole value once it is decoded (:func:`_measure`), which bounds the total
    depth, lists and dicts included, so that whatever is accepted here can be
    encoded again (msgpack's encoder recurses in C once per level of lists).  A
    message of at most MAX_DEPTH bytes cannot nest deeper than that (each level
    costs a byte), so the common small message skips the count; only a ``large``
    one is measured and has its dicts' keys checked for colliding hashes.
    """

    __slots__ = ("buffers", "depth", "hold", "large")

    def __init__(self, data: bytes, buffers: list[Any] | None, hold: bool = False) -> None:
        self.depth = 0
        self.large = len(data) > MAX_DEPTH
        self.buffers = buffers or []
        self.hold = hold

    def frame(self, data: bytes) -> Any:
        """Decode one msgpack document (the message, or an extension's payload)."""
        if self.depth <= _SHALLOW:
            if not self.large:
                return _unpackb(data, raw=False, ext_hook=self.ext, strict_map_key=False)
            return _unpackb(data, raw=False, ext_hook=self.ext, strict_map_key=False, object_pairs_hook=_pairs)
        # msgpack.unpackb keeps ~40 KiB of decoding context on the C stack; an
        # Unpacker keeps it on the heap, so deep frames cost about 1 KiB each.
        unpacker = msgpack.Unpacker(
            raw=False,
            ext_hook=self.ext,
            strict_map_key=False,
            object_pairs_hook=_pairs,
            max_buffer_size=max(len(data), 1),
        )
        unpacker.feed(data)
        obj = unpacker.unpack()
        if unpacker.tell() != len(data):
            raise SerialisationError("malformed message: extra bytes after a value")
        return obj

    def ext(self, code: int, data: bytes) -> Any:
        # The tuple is by far the most common extension (every tuple of a
        # move_many is one), so its path is kept short: a frame this shallow is
        # unpacked in place, and the total depth is measured once at the end.
        # On an error the whole decoding is dropped, so depth needs no restoring.
        if code == _TUPLE or code == _SET or code == _FROZENSET:
            depth = self.depth + 1
            if depth > MAX_DEPTH:
                raise _too_deep()
            self.depth = depth
            if depth > _SHALLOW:
                items = self.frame(data)
            elif self.large:
                items = _unpackb(data, raw=False, ext_hook=self.ext, strict_map_key=False, object_pairs_hook=_pairs)
            else:
                items = _unpackb(data, raw=False, ext_hook=self.ext, strict_map_key=False)
            self.depth = depth - 1
            if type(items) is not list:
                raise SerialisationError("malformed message: a tuple or set without its members")
            if code == _TUPLE:
                return tuple(items)
            if len(items) > MAX_COLLISIONS:
                _check_hashes(items, "set members")
            return set(items) if code == _SET else frozenset(items)
        if code == _TYPE:
            name = data.decode()
            if name == "numpy.ndarray":
                return _need_numpy().ndarray
            if name.startswith(_BUILTIN_PREFIX):
                return _builtin(name)
            try:
                return _TYPES[name]
            except KeyError:
                raise SerialisationError(
                    f"received the type {name!r}, which is not known on this side (is NumPy installed?)"
                ) from None
        if code == _COMPLEX:
            real, imag = struct.unpack("<dd", data)
            return complex(real, imag)
        if code == _BIGINT:
            try:
                return int(data)
            except ValueError:
                limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
                raise SerialisationError(
                    f"received an integer of {len(data)} digits; the limit is {limit} (sys.get_int_max_str_digits())"
                ) from None
        if code == _NDARRAY:
            _np = _need_numpy()
            dt, shape, buf = _array_parts(data)
            if not isinstance(buf, bytes):
                raise SerialisationError("malformed message: an array without its bytes")
            return _np.frombuffer(buf, dtype=dt).reshape(shape).copy()
        if code == _NDARRAY_OOB:
            _np = _need_numpy()
            dt, shape, number = _array_parts(data)
            buffers = self.buffers
            if not isinstance(number, int) or not 0 <= number < len(buffers):
                raise SerialisationError("a message refers to an array buffer that did not come with it")
            return _np.frombuffer(buffers[number], dtype=dt).reshape(shape)
        if code == _BYTES_OOB:
            buffers = self.buffers
            number = _INDEX.unpack(data)[0] if len(data) == _INDEX.size else -1
            if not 0 <= number < len(buffers):
                raise SerialisationError("a message refers to a bytes buffer that did not come with it")
            return HeldBytes(buffers[number]) if self.hold else bytes(buffers[number])
        raise SerialisationError(f"received an unknown value kind ({code}); are both sides the same pastset version?")
