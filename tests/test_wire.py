"""The wire codec: what goes in comes out, the same types; nothing else goes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pastset.errors import SerialisationError
from pastset.wire import MAX_DEPTH, OUT_OF_BAND, HeldBytes, decode, decode_parts, encode, encode_parts, released

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


def test_large_bytes_fields_travel_beside_the_body_and_the_server_sends_them_on_without_a_copy():
    big, other = b"\x01" * (OUT_OF_BAND + 5), b"\x02" * OUT_OF_BAND
    small = b"\x03" * (OUT_OF_BAND - 1)
    message = ("move", 3, ("m", big, small, (other,), [big]), None)
    parts = encode_parts(message)
    assert len(parts) == 3, "the two large bytes fields of tuples go beside; bytes in a list stay in band"
    assert len(parts[0]) < 2 * OUT_OF_BAND + 1000 and bytes(parts[1]) == big and bytes(parts[2]) == other
    back = decode_parts(*_as_received(parts))
    assert back == message
    assert type(back[2][1]) is bytes and type(back[2][3][0]) is bytes, "a client gets plain bytes"
    received = _as_received(parts)
    held = decode_parts(*received, hold=True)
    assert held == message and type(held[2][1]) is HeldBytes and type(held[2][2]) is bytes
    assert held[2][1].view.obj is received[1][0], "the server keeps the bytes in the buffer they arrived in"
    assert len(held[2][1]) == len(big) and bytes(held[2][1]) == big and hash(held[2][1]) == hash(big)
    again = encode_parts(("ok", held[2]))
    assert [len(p) for p in again[1:]] == [len(big), len(other)]
    assert again[1] is held[2][1].view, "the held memory goes to the socket as it is, not a copy"
    assert decode(encode(held)) == message and type(decode(encode(held))[2][1]) is bytes  # in band, as before
    plain = released(held)
    assert plain == message and type(plain[2][1]) is bytes and type(plain[2][3][0]) is bytes
    assert released(message) is message, "nothing held: the same object"


def test_out_of_band_bytes_references_must_match_their_buffers():
    body, *_ = encode_parts((b"x" * OUT_OF_BAND,))
    with pytest.raises(SerialisationError, match="did not come with it"):
        decode_parts(body, [])
    with pytest.raises(SerialisationError, match="did not come with it"):
        decode(body)


def test_a_packed_again_tuple_sends_each_array_once():
    arr = np.ones(OUT_OF_BAND, dtype=np.uint8)
    parts = encode_parts(((arr, b"y" * OUT_OF_BAND),))  # packed once in band, then again with the bytes beside
    assert len(parts) == 3
    ((got, raw),) = decode_parts(*_as_received(parts))
    assert got.sum() == OUT_OF_BAND and raw == b"y" * OUT_OF_BAND


# ------------------------------------------------------------------ limits
def _nested(levels: int, kind: type) -> object:
    value: object = 1
    for _ in range(levels):
        value = kind([value]) if kind is not dict else {"k": value}
    return value


def _deep_tuple_bytes(levels: int) -> bytes:
    """Bytes of a tuple nested ``levels`` deep, made by hand (a peer that skips the encoder's checks)."""
    import msgpack

    data = msgpack.packb(1)
    for _ in range(levels):
        data = msgpack.packb(msgpack.ExtType(1, b"\x91" + data))
    return data


@pytest.mark.parametrize("kind", [tuple, frozenset])
def test_too_deep_values_are_refused_on_encoding_naming_depth_and_limit(kind):
    with pytest.raises(SerialisationError, match=rf"nests {MAX_DEPTH + 50} levels deep .* the limit is {MAX_DEPTH}"):
        encode(_nested(MAX_DEPTH + 50, kind))
    with pytest.raises(SerialisationError, match=rf"the limit is {MAX_DEPTH}"):
        encode(_nested(5000, kind))  # deeper than Python's recursion limit: still no RecursionError


@pytest.mark.parametrize("kind", [tuple, list, dict])
def test_too_deep_messages_are_refused_on_decoding(kind):
    import msgpack

    inner = msgpack.packb(_nested(MAX_DEPTH + 10, list if kind is tuple else kind))
    with pytest.raises(SerialisationError, match=rf"nests more than {MAX_DEPTH} levels"):
        decode(msgpack.packb(msgpack.ExtType(1, b"\x91" + inner)))
    with pytest.raises(SerialisationError, match=rf"nests more than {MAX_DEPTH} levels"):
        decode(_deep_tuple_bytes(MAX_DEPTH + 1))


def test_values_at_the_limit_round_trip_and_deeper_bytes_cannot_overflow_a_small_thread_stack():
    # The server's threads have 1 MiB stacks; a crash here kills the child, not the test run.
    code = (
        "import threading, msgpack\n"
        "from pastset import wire\n"
        "def deep(n):\n"
        "    data = msgpack.packb(1)\n"
        "    for _ in range(n):\n"
        "        data = msgpack.packb(msgpack.ExtType(1, b'\\x91' + data))\n"
        "    return data\n"
        "threading.stack_size(1 << 20)\n"
        "out = []\n"
        "def nested(levels, kind):\n"
        "    value = 1\n"
        "    for _ in range(levels):\n"
        "        value = kind([value]) if kind is not dict else {'k': value}\n"
        "    return value\n"
        "def run():\n"
        "    for kind in (tuple, list, dict):  # at the limit: round trips, on a 1 MiB stack too\n"
        "        value = ('v', nested(wire.MAX_DEPTH - 2, kind))\n"
        "        assert wire.decode(wire.encode(value)) == value\n"
        "    out.append(len(wire.decode(deep(wire.MAX_DEPTH))))\n"
        "    for n in (200, 3000):\n"
        "        try:\n"
        "            wire.decode(deep(n))\n"
        "        except wire.SerialisationError as err:\n"
        "            out.append(str(err)[:30])\n"
        "t = threading.Thread(target=run)\n"
        "t.start()\n"
        "t.join()\n"
        "print(out)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"the decoder crashed the process ({result.returncode}): {result.stderr}"
    assert result.stdout.strip() == "[1, 'a value nests more than 100 le', 'a value nests more than 100 le']"


def test_integers_beyond_the_digit_limit_are_refused_clearly():
    import msgpack

    with pytest.raises(SerialisationError, match="digits cannot be sent; the limit is 4300 digits"):
        encode((10**5000,))
    with pytest.raises(SerialisationError, match="integer of 5000 digits; the limit is 4300"):
        decode(msgpack.packb(msgpack.ExtType(7, b"1" * 5000)))
    assert decode(encode((10**4000,))) == (10**4000,)


def test_hash_colliding_sets_and_dict_keys_are_refused():
    colliding = [complex(-1000003 * k, k) for k in range(2000)]
    assert len({hash(c) for c in colliding}) == 1
    bigints = [k * (2**61 - 1) + 5 for k in range(1, 2000)]  # ints hash modulo 2**61 - 1
    for members in (colliding, bigints):
        for value in (set(members), frozenset(members), dict.fromkeys(members, 0)):
            with pytest.raises(SerialisationError, match="share a hash"):
                decode(encode((value,)))
    ordinary = {complex(k, k) for k in range(5000)}
    assert decode(encode((ordinary,))) == (ordinary,)


def test_structured_arrays_keep_field_names_and_layout():
    plain = np.zeros(4, dtype=[("x", "<i4"), ("y", "<f8", (2,)), ("name", "S5"), ("u", "<U3")])
    plain["x"] = [1, 2, 3, 4]
    plain["y"][:, 1] = 2.5
    plain["name"] = b"abc"
    plain["u"] = "åø"
    aligned = np.zeros((2, 3), dtype=np.dtype([("a", "u1"), ("b", "<i8")], align=True))
    aligned["b"] = 7
    big = np.zeros(OUT_OF_BAND, dtype=plain.dtype)
    for arr in (plain, aligned, big):
        got = decode(encode(arr))
        assert (
            got.dtype == arr.dtype and got.dtype.names == arr.dtype.names and got.dtype.itemsize == arr.dtype.itemsize
        )
        assert got.shape == arr.shape and (got == arr).all()
        parts = encode_parts(arr)
        got = decode_parts(parts[0], [bytearray(p) for p in parts[1:]])
        assert got.dtype == arr.dtype and (got == arr).all()


def test_structured_arrays_that_cannot_keep_their_layout_are_refused_before_sending():
    nested = np.zeros(2, dtype=[("inner", [("a", "i4"), ("b", "f8")])])
    with pytest.raises(SerialisationError, match="'inner' is itself structured"):
        encode(nested)
    with pytest.raises(SerialisationError, match="dtype=object"):
        encode(np.zeros(2, dtype=[("a", "i4"), ("o", object)]))


def test_built_in_functions_travel_by_name_and_nothing_else_callable_does():
    """pyPastSet pickled ``id`` into a loose slot (its xtemplatelimits example); here it goes by name."""
    import os

    value = ("Loose", id, len, [max])
    back = decode(encode(value))
    assert back == value and back[1] is id and back[3][0] is max
    for refused in (lambda: 1, os.getpid, print.__call__):
        with pytest.raises(SerialisationError, match="cannot be sent"):
            encode((refused,))
    import msgpack

    for name in ("builtins.int", "builtins.nothing", "builtins.os"):  # not built-in functions: refused
        forged = msgpack.packb(msgpack.ExtType(2, name.encode()))
        with pytest.raises(SerialisationError, match="not a built-in function"):
            decode(forged)
