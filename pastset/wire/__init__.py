"""The wire codec: what a PastSet value looks like in bytes.

Pyro5 carries our messages as opaque ``bytes`` (with its msgpack serializer, which
passes bytes through without copying them into text).  Inside those bytes we use
msgpack with extension types so that what arrives is what was sent: tuples stay
tuples (nested ones too), templates keep their Python type objects, sets, complex
numbers, big integers and NumPy arrays survive.  NumPy arrays travel as their raw
buffer (``tobytes``/``frombuffer``), never element by element.

:func:`encode_parts` / :func:`decode_parts` are the same codec with large arrays
and large ``bytes`` fields of tuples *out of band*: the message body refers to
them by number and their memory travels beside it, so a transport that can
send several buffers (the direct channel, :mod:`pastset.transport.channel`)
never copies a large value into the message nor out of it again.  The server
keeps such bytes in the memory they arrived in (:class:`HeldBytes`).

Nothing here ever unpickles: a type object is sent by name and looked up in a
fixed table, so bytes from the network can only ever produce plain data.
Anything the codec does not know is refused on the sending side with a
:class:`~pastset.errors.SerialisationError` that names the value's type.

Limits (checked on both sides, so a peer that skips the sending side's checks
gets the same refusal from the receiving side, and never a crashed process):

- :data:`MAX_DEPTH` levels of nesting.  msgpack decodes lists and dicts with
  a stack of its own, but every tuple, set or array is an extension whose
  payload is decoded by a call of its own: ``msgpack.unpackb`` keeps its
  decoding context (about 40 KiB) on the C stack, so some 25 nested tuples
  overflowed a 1 MiB thread stack.  Frames below the first few are decoded with
  a heap-allocated ``msgpack.Unpacker`` (about 1 KiB of C stack a level), the
  depth is counted as extensions open, and the total depth, lists and dicts
  included, is counted bottom-up as containers are built.
- Sets and dict keys whose hashes collide en masse (complex numbers and big
  integers can be chosen to) are refused: building them would take quadratic
  time.
- Integers of more than ``sys.get_int_max_str_digits()`` digits (4300 by default).
"""

from __future__ import annotations

import operator
import struct
import sys
import threading
from itertools import repeat
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


__all__ = [
    "MAX_DEPTH",
    "OUT_OF_BAND",
    "SUPPORTED",
    "HeldBytes",
    "decode",
    "decode_parts",
    "encode",
    "encode_parts",
    "released",
]

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


class HeldBytes:
    """A large ``bytes`` value as the server holds it: a read-only view of the memory it arrived in.

    The server decodes an out-of-band ``bytes`` field (``decode_parts(...,
    hold=True)``) into this, not into ``bytes``: making a ``bytes`` of 64 MiB
    copies it into fresh memory with the interpreter lock held (some 40 ms
    here), and every other client of the server waits that long.  Held, the
    value is never copied: :func:`encode_parts` hands the same memory to the
    socket when an observer takes it.  It has the length, equality and hash of
    the ``bytes`` it stands for, and ``bytes(value)`` gives them.  Clients
    always receive plain ``bytes``; X-functions get plain ``bytes`` too (see
    :func:`released`).
    """

    __slots__ = ("view",)

    def __init__(self, buffer: Any) -> None:
        self.view = memoryview(buffer).toreadonly()

    def __len__(self) -> int:
        return self.view.nbytes

    @property
    def nbytes(self) -> int:
        """The size in bytes, as NumPy arrays say it (what the server counts as large)."""
        return self.view.nbytes

    def __bytes__(self) -> bytes:
        return self.view.tobytes()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeldBytes):
            return self.view == other.view
        return isinstance(other, bytes) and self.view == other

    def __hash__(self) -> int:
        return hash(self.view.tobytes())

    def __repr__(self) -> str:
        return repr(self.view.tobytes())


def released(value: Any) -> Any:
    """``value`` with every :class:`HeldBytes` in its tuples and lists made plain ``bytes`` (for user code)."""
    kind = type(value)
    if kind is HeldBytes:
        return value.view.tobytes()
    if kind is tuple or kind is list:
        items = [released(item) for item in value]
        if all(map(operator.is_, items, value)):
            return value  # nothing held inside: the same object
        return tuple(items) if kind is tuple else items
    return value


class _Beside:
    """A ``bytes`` field of a tuple being encoded, marked to travel out of band (never copied)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value


def _beside(fields: tuple) -> list[Any] | None:
    """``fields`` with each large ``bytes`` marked to go out of band; None if there is none."""
    marked = [_Beside(f) if type(f) is bytes and len(f) >= OUT_OF_BAND else f for f in fields]
    return marked if any(type(f) is _Beside for f in marked) else None


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


def _default(obj: Any) -> Any:
    # Called by msgpack for everything it does not pack natively (strict types).
    if type(obj) is tuple:
        beside = getattr(_local, "oob", None)
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
        beside = getattr(_local, "oob", None)
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
            beside = getattr(_local, "oob", None)
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
_INDEX = struct.Struct("<I")


def _pack(obj: Any) -> bytes:
    # Building a Packer costs ~15 us, using one ~1 us: keep one per thread and
    # nesting depth (an extension's payload is packed while its parent packs).
    try:
        packers = _local.packers
    except AttributeError:
        packers = _local.packers = []
        _local.depth = 0
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
        beside = getattr(_local, "oob", None)
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
        if decoding.depths is not None and type(obj) in _NATIVE_KINDS:
            decoding.measure(obj)
        return obj
    except SerialisationError:
        raise
    except (RecursionError, msgpack.StackError):
        raise _too_deep() from None
    except Exception as err:
        raise SerialisationError(f"malformed message: {err}") from err


# ------------------------------------------------------------------- decoding
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


class _Decoding:
    """The state of decoding one message.

    Depth is counted twice: top-down as extension frames open (``depth``, which
    bounds the C recursion, since each frame is a nested decoder call), and
    bottom-up once a frame is decoded (``depths``: id of a tuple or set built
    but not yet taken by its parent -> its depth), which bounds the total depth,
    lists and dicts included, so that whatever is accepted here can be encoded
    again (msgpack's encoder recurses in C once per level of lists).  A frame's
    lists and dicts are walked with C-speed type checks, and only where they hold
    containers.  A message of at most MAX_DEPTH bytes cannot nest deeper than
    that (each level costs a byte), so the common small message skips the count.
    """

    __slots__ = ("buffers", "depth", "depths", "hold")

    def __init__(self, data: bytes, buffers: list[Any] | None, hold: bool = False) -> None:
        self.depth = 0
        self.depths: dict[int, int] | None = {} if len(data) > MAX_DEPTH else None
        self.buffers = buffers or []
        self.hold = hold

    def frame(self, data: bytes) -> Any:
        """Decode one msgpack document (the message, or an extension's payload)."""
        if self.depth <= _SHALLOW:
            if self.depths is None:
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

    def measure(self, root: list | dict) -> int:
        """The depth of a frame's list or dict, taking its tuples' and sets' recorded depths."""
        depths = self.depths
        assert depths is not None
        deepest = 0
        stack: list[tuple[Any, int]] = [(root, 1)]
        while stack:
            node, level = stack.pop()
            if level > MAX_DEPTH:
                raise _too_deep()
            if type(node) is dict:
                children: Any = [*node, *node.values()]
            else:
                children = node
            kinds = set(map(type, children))
            below = 0
            if not kinds.isdisjoint(_EXT_KINDS):
                below = max(map(depths.pop, map(id, children), repeat(0)), default=0)
            deepest = max(deepest, level + below)
            if not kinds.isdisjoint(_NATIVE_KINDS):
                stack.extend((child, level + 1) for child in children if type(child) in _NATIVE_KINDS)
        if deepest > MAX_DEPTH:
            raise _too_deep()
        return deepest

    def ext(self, code: int, data: bytes) -> Any:
        if code == _TUPLE or code == _SET or code == _FROZENSET:
            depth = self.depth + 1
            if depth > MAX_DEPTH:
                raise _too_deep()
            self.depth = depth
            try:
                items = self.frame(data)
            finally:
                self.depth = depth - 1
            if type(items) is not list:
                raise SerialisationError("malformed message: a tuple or set without its members")
            if code == _TUPLE:
                obj: Any = tuple(items)
            else:
                if len(items) > MAX_COLLISIONS:
                    _check_hashes(items, "set members")
                obj = set(items) if code == _SET else frozenset(items)
            depths = self.depths
            if depths is not None:
                depths[id(obj)] = 1 if _CONTAINERS.isdisjoint(map(type, items)) else self.measure(items)
            return obj
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
