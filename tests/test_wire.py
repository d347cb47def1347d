"""The wire codec: what goes in comes out, the same types; nothing else goes."""

from __future__ import annotations

import numpy as np
import pytest

from pastset.errors import SerialisationError
from pastset.wire import OUT_OF_BAND, decode, decode_parts, encode, encode_parts

VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    2**64 - 1,
    2**100,
    -(2**100),
    3.14,
    float("inf"),
    1 + 2j,
    "text ÆØÅ",
    b"\x00bytes",
    (),
    (1,),
    (1, (2, (3, (4,)))),
    [1, (2, [3])],
    {"a": (1, 2), (1, 2): {3}, 4: None},
    {1, 2, 3},
    frozenset({(1, 2)}),
    ("Test", int, float, complex, str, bytes, bool, tuple, list, dict, set, type(None), np.ndarray),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_round_trip_keeps_value_and_type(value):
    back = decode(encode(value))
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, (tuple, list)):
        assert [type(x) for x in back] == [type(x) for x in value]


def test_nested_tuples_stay_tuples_and_lists_stay_lists():
    back = decode(encode(((1, [2, (3,)]), [(4,)])))
    assert type(back) is tuple and type(back[0]) is tuple and type(back[0][1]) is list
    assert type(back[0][1][1]) is tuple and type(back[1][0]) is tuple


def test_numpy_arrays_round_trip_with_dtype_and_shape():
    for arr in (
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        np.linspace(0, 1, 7),
        np.zeros((0, 3)),
        np.arange(10)[::2],
        np.array([1 + 2j]),
    ):
        back = decode(encode(("m", arr)))[1]
        assert back.dtype == arr.dtype and back.shape == arr.shape
        assert np.array_equal(back, arr)
        back[...] = 0  # a private, writable copy


def test_numpy_scalars_become_python_numbers():
    assert decode(encode((np.float64(2.5), np.int32(3), np.bool_(True)))) == (2.5, 3, True)


class Opaque:
    pass


@pytest.mark.parametrize("value", [Opaque(), (1, Opaque()), {"k": Opaque()}, [object()]])
def test_unsupported_values_are_refused_naming_the_type(value):
    with pytest.raises(SerialisationError, match="Opaque|object"):
        encode(value)


def test_unsupported_type_objects_are_refused():
    with pytest.raises(SerialisationError, match="Opaque"):
        encode(("t", Opaque))


def test_object_arrays_are_refused():
    with pytest.raises(SerialisationError, match="dtype=object"):
        encode(np.array([Opaque()], dtype=object))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\xd4\x02\x00", b"\xd6\x63abcd", b"\xd4\x09\x00", b"\x92\x01"])
def test_malformed_bytes_raise_serialisation_error(data):
    with pytest.raises(SerialisationError):
        decode(data)


def test_unknown_type_name_from_the_network_is_refused():
    import msgpack

    data = msgpack.packb(msgpack.ExtType(2, b"os.system"))
    with pytest.raises(SerialisationError, match="os.system"):
        decode(data)


def _as_received(parts: list) -> tuple[bytes, list[bytearray]]:
    """What the channel hands the decoder: the body, and each buffer in memory of its own."""
    return bytes(parts[0]), [bytearray(part) for part in parts[1:]]


def test_large_arrays_travel_beside_the_body_and_small_ones_inside():
    big = np.arange(OUT_OF_BAND // 4 + 10, dtype=np.float64).reshape(-1, 2)
    small = np.arange(10, dtype=np.int32)
    message = ("move", 3, ("m", big, small, [big[:, 0]]), None)
    parts = encode_parts(message)
    assert len(parts) == 3  # body + the two large arrays (big, and its strided column copied contiguous)
    assert len(parts[0]) < 2000, "a large array's bytes are not in the body"
    assert bytes(parts[1]) == big.tobytes()
    back = decode_parts(*_as_received(parts))
    assert back[:2] == ("move", 3) and back[3] is None
    _, got_big, got_small, [column] = back[2]
    assert got_big.dtype == big.dtype and got_big.shape == big.shape and np.array_equal(got_big, big)
    assert np.array_equal(got_small, small) and np.array_equal(column, big[:, 0])
    got_big[0, 0] = -1.0  # a received array is the receiver's own, writable
    assert big[0, 0] == 0.0
    assert decode(encode(message))[2][1].shape == big.shape  # the in-band form still works


def test_out_of_band_references_must_match_their_buffers():
    big = np.zeros(OUT_OF_BAND, dtype=np.uint8)
    body, *buffers = encode_parts((big,))
    with pytest.raises(SerialisationError, match="did not come with it"):
        decode_parts(body, [])
    with pytest.raises(SerialisationError, match="did not come with it"):
        decode(body)  # an in-band decoder has no buffers at all
    with pytest.raises(SerialisationError):
        decode_parts(body, [bytearray(7)])  # the wrong size for the dtype and shape
    assert decode_parts(body, [bytearray(buffers[0])])[0].nbytes == OUT_OF_BAND


def test_encode_parts_of_a_big_integer_retry_keeps_one_buffer_per_array():
    big = np.ones(OUT_OF_BAND, dtype=np.uint8)
    parts = encode_parts((2**100, big))  # the first attempt overflows and is packed again
    assert len(parts) == 2
    value, arr = decode_parts(*_as_received(parts))
    assert value == 2**100 and arr.sum() == OUT_OF_BAND
