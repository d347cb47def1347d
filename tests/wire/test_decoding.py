"""Decoding within the limits: malformed frames of each kind are refused by name, held bytes are views.

Messages are built by hand with msgpack and the codec's extension codes, the
way a peer that skipped the encoder's checks would send them.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest

from pastset.errors import SerialisationError
from pastset.wire.decoding import decode, decode_parts
from pastset.wire.encoding import encode, encode_parts
from pastset.wire.held import HeldBytes
from pastset.wire.kinds import (
    _BIGINT,
    _BYTES_OOB,
    _COMPLEX,
    _NDARRAY,
    _NDARRAY_OOB,
    _TUPLE,
    _TYPE,
    MAX_COLLISIONS,
    MAX_DEPTH,
    OUT_OF_BAND,
)


def ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


def test_held_bytes_are_views_of_the_buffer_that_came_and_plain_decoding_copies() -> None:
    body, *_ = encode_parts(("k", b"x" * OUT_OF_BAND))
    buffer = bytearray(b"y" * OUT_OF_BAND)
    held = decode_parts(body, [buffer], hold=True)[1]
    plain = decode_parts(body, [buffer])[1]
    buffer[0:1] = b"z"
    assert type(held) is HeldBytes and bytes(held)[:1] == b"z"
    assert type(plain) is bytes and plain[:1] == b"y"


def test_out_of_band_arrays_are_views_of_their_buffer() -> None:
    body, *_ = encode_parts((np.zeros(OUT_OF_BAND, dtype="u1"),))
    buffer = bytearray(OUT_OF_BAND)
    array = decode_parts(body, [buffer])[0]
    array[0] = 9
    assert buffer[0] == 9, "writable where the buffer is"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "malformed message"),
        (ext(42, b""), r"unknown value kind \(42\); are both sides the same pastset version"),
        (ext(_TUPLE, msgpack.packb(5)), "a tuple or set without its members"),
        (ext(_TYPE, b"os.system"), "received the type 'os.system', which is not known"),
        (ext(_TYPE, b"builtins.open_sesame"), "not a built-in function"),
        (ext(_BIGINT, b"12x"), r"received an integer of 3 digits; the limit is"),
        (ext(_COMPLEX, b"\x00" * 8), "malformed message"),
        (ext(_BYTES_OOB, b"\x00\x00"), "a bytes buffer that did not come with it"),
        (ext(_BYTES_OOB, struct.pack("<I", 0)), "a bytes buffer that did not come with it"),
        (ext(_NDARRAY, msgpack.packb(["<f8", [1]])), "a bad array header"),
        (ext(_NDARRAY, msgpack.packb(["<f8", [1.5], b"\x00" * 8])), "a bad array shape"),
        (ext(_NDARRAY, msgpack.packb(["<f8", [1], "text"])), "an array without its bytes"),
        (ext(_NDARRAY, msgpack.packb([msgpack.ExtType(_TUPLE, b"\x90"), [1], b""])), "description holds a nested"),
        (ext(_NDARRAY_OOB, msgpack.packb(["<f8", [1], 0])), "an array buffer that did not come with it"),
        (ext(_NDARRAY, msgpack.packb(["|O", [1], b"\x00" * 8])), "Python objects"),
    ],
)
def test_malformed_frames_are_refused_saying_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(SerialisationError, match=message):
        decode(data)


def test_a_big_integer_and_a_complex_number_frame_decode() -> None:
    assert decode(ext(_BIGINT, b"-" + b"9" * 30)) == -int("9" * 30)
    assert decode(ext(_COMPLEX, struct.pack("<dd", 1.5, -2.0))) == complex(1.5, -2.0)


def nested_lists(levels: int) -> bytes:
    """``levels`` lists one inside the other, packed by msgpack itself (no checks of ours)."""
    return b"\x91" * (levels - 1) + b"\x90"


def test_lists_count_towards_the_depth_limit_too() -> None:
    assert decode(nested_lists(MAX_DEPTH)) is not None
    with pytest.raises(SerialisationError, match=f"the limit is {MAX_DEPTH}"):
        decode(nested_lists(MAX_DEPTH + 1))


def test_lists_and_tuples_add_up_to_the_depth_limit() -> None:
    half = MAX_DEPTH // 2
    tuple_frame = msgpack.packb(msgpack.ExtType(_TUPLE, nested_lists(half)))  # a tuple nesting `half` levels
    value = decode(b"\x91" * (MAX_DEPTH - half) + tuple_frame)  # exactly MAX_DEPTH levels in all
    for _ in range(MAX_DEPTH - half):
        assert type(value) is list and len(value) == 1
        value = value[0]
    assert type(value) is tuple
    with pytest.raises(SerialisationError, match="nests more than"):
        decode(b"\x91" * (MAX_DEPTH - half + 1) + tuple_frame)


def test_flat_tuples_count_one_level_and_the_deepest_member_decides() -> None:
    # A tuple of no containers records no depth of its own: it must still count one level, beside
    # siblings that are numbers, and a deep tuple among many flat ones must still set the depth.
    flat = [(i, 3.14) for i in range(200)]
    at_limit = [[*flat, 7]]
    for _ in range(MAX_DEPTH - 3):
        at_limit = [at_limit]
    assert decode(encode(at_limit)) == at_limit  # MAX_DEPTH - 1 lists and one level of tuples
    with pytest.raises(SerialisationError, match="nests more than"):
        decode(b"\x91" + encode(at_limit))  # one list more: the flat tuples' level is counted
    # a tuple of MAX_DEPTH - 2 levels, inside a tuple
    deep_member = (1, msgpack.ExtType(_TUPLE, nested_lists(MAX_DEPTH - 2)))
    deep_member_bytes = msgpack.packb(msgpack.ExtType(_TUPLE, msgpack.packb(list(deep_member))))
    many = b"\xdc" + struct.pack(">H", 201) + encode((1, 2.0)) * 200 + deep_member_bytes
    assert len(decode(many)) == 201  # the list, the tuple and its inner tuple: MAX_DEPTH levels
    with pytest.raises(SerialisationError, match="nests more than"):
        decode(b"\x91" + many)  # one list more


def test_colliding_dict_keys_are_refused_before_the_dict_is_built() -> None:
    keys = [complex(1000003 * k, -k) for k in range(1, 600)]  # hash(a+bj) is hash(a) + 1000003*hash(b): all 0
    assert len({hash(k) for k in keys}) < len(keys) - MAX_COLLISIONS
    with pytest.raises(SerialisationError, match="dict keys of which"):
        decode(encode({k: 0 for k in keys}))


def test_a_message_of_many_sets_keeps_each_set_as_sent() -> None:
    value = [{1, 2}, frozenset({3}), (set(),)]
    assert decode(encode(value)) == value
