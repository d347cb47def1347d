"""Encoding: what goes beside the body and what stays in it, subclasses as their base, recovery after refusals.

Round trips of the codec as a whole are tests/test_wire.py; here the encoder's
own promises are checked on the bytes and buffers it makes.
"""

from __future__ import annotations

import collections
import enum
import threading

import msgpack
import numpy as np
import pytest

from pastset.errors import SerialisationError
from pastset.wire.decoding import decode, decode_parts
from pastset.wire.encoding import encode, encode_parts
from pastset.wire.held import HeldBytes
from pastset.wire.kinds import OUT_OF_BAND

BIG = b"b" * OUT_OF_BAND


def test_small_values_make_a_body_alone() -> None:
    parts = encode_parts(("jobs", 1, b"small", np.arange(4)))
    assert len(parts) == 1 and parts[0] == encode(("jobs", 1, b"small", np.arange(4)))


def test_large_bytes_go_beside_only_as_fields_of_a_tuple() -> None:
    assert len(encode_parts(BIG)) == 1, "a bare bytes value is in the body"
    assert len(encode_parts([BIG])) == 1, "so are the items of a list"
    body, buffer = encode_parts(("k", BIG))
    assert isinstance(buffer, memoryview) and buffer.obj is BIG, "the value's own memory, not a copy"
    assert len(body) < 100
    assert decode_parts(body, [buffer]) == ("k", BIG)


def test_large_arrays_go_beside_as_views_of_their_memory() -> None:
    array = np.zeros(OUT_OF_BAND // 8, dtype="<f8")
    _, buffer = encode_parts((array,))
    array[0] = 7.0
    assert np.frombuffer(buffer, dtype="<f8")[0] == 7.0, "a view: send it before the array changes"


def test_held_bytes_go_beside_from_the_memory_they_are_held_in_or_in_band_without_buffers() -> None:
    memory = bytearray(BIG)
    held = HeldBytes(memory)
    _, buffer = encode_parts(("k", held))
    assert isinstance(buffer, memoryview) and buffer.obj is memory
    plain = decode(encode(("k", held)))
    assert plain == ("k", BIG) and type(plain[1]) is bytes


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


Point = collections.namedtuple("Point", "x y")


def test_subclasses_of_native_types_travel_as_their_base() -> None:
    value = decode(encode([Colour.RED, Name("n"), collections.OrderedDict(a=1), Point(1, 2), bytearray(b"ba")]))
    assert value == [1, "n", {"a": 1}, (1, 2), b"ba"]
    assert [type(v) for v in value] == [int, str, dict, tuple, bytes]


def test_numpy_scalars_travel_as_python_numbers() -> None:
    assert msgpack.unpackb(encode(np.float32(0.5))) == 0.5


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, (1, 2**100), {2**70: [-(2**90)]}])
def test_integers_beyond_64_bits_are_sent_exactly(value: object) -> None:
    assert decode(encode(value)) == value


def test_integers_that_fit_msgpack_stay_native() -> None:
    assert msgpack.unpackb(encode([2**64 - 1, -(2**63)])) == [2**64 - 1, -(2**63)]


def test_a_type_that_cannot_be_sent_is_named() -> None:
    with pytest.raises(SerialisationError, match=r"the type collections\.OrderedDict cannot be sent"):
        encode(("x", collections.OrderedDict))


def test_a_refused_value_leaves_the_encoder_as_it_was() -> None:
    with pytest.raises(SerialisationError):
        encode((1, [2, (3, object())]))
    assert decode(encode((1, [2, (3, 4)]))) == (1, [2, (3, 4)])
    with pytest.raises(SerialisationError):
        encode_parts(("k", BIG, object()))
    body = encode(("k", BIG))
    assert decode(body) == ("k", BIG), "after a failed encode_parts nothing is put beside a plain encode"


def test_each_thread_encodes_on_its_own() -> None:
    results: dict[int, bool] = {}

    def work(number: int) -> None:
        value = (number, [number] * 50, ("x" * number, {number}))
        results[number] = all(decode(encode(value)) == value for _ in range(200))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == dict.fromkeys(range(4), True)
