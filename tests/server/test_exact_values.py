"""Values the wire cannot carry exactly, and odd arguments: a clear error, nothing stored or consumed."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pastset
from pastset import wire
from pastset.errors import PastSetValueError, SerialisationError, XFunctionError

pytestmark = pytest.mark.timeout(120)


def nested(levels: int, kind: type) -> object:
    value: object = 1
    for _ in range(levels):
        value = kind([value])
    return value


def still_serves(pset: pastset.PastSet) -> None:
    other = pset.enter(("exact-other", int))
    for i in range(5):
        other.move((i,))
        assert other.observe() == (i,)


def test_unsendable_values_are_refused_and_nothing_is_stored(server):
    pset = pastset.PastSet()
    e = pset.enter(("exact", object))
    cases = [
        ((10**5000,), "the limit is 4300 digits"),
        ((nested(150, tuple),), r"nests 15\d levels deep"),
        ((nested(150, list),), f"nests more than {wire.MAX_DEPTH} levels"),  # refused by the server's decoder
        ((np.array([object()], dtype=object),), "dtype=object"),
    ]
    for value, message in cases:
        for send in (lambda v: e.move(v), lambda v: e.move_many([v])):
            with pytest.raises(SerialisationError, match=message):
                send(value)
    assert (e.first(), e.last()) == (0, 0)
    still_serves(pset)
    assert server.proc.poll() is None


def test_structured_arrays_come_back_with_their_fields(server):
    pset = pastset.PastSet()
    e = pset.enter(("exact-struct", np.ndarray))
    arr = np.zeros(3, dtype=[("id", "<i4"), ("pos", "<f8", (3,)), ("tag", "S4")])
    arr["id"] = [1, 2, 3]
    arr["pos"][:, 2] = 9.5
    arr["tag"] = b"ok"
    big = np.zeros(100_000, dtype=arr.dtype)  # out of band on the channel
    big["id"] = np.arange(100_000)
    for value in (arr, big):
        e.move((value,))
        (got,) = e.observe()
        assert got.dtype == value.dtype and got.dtype.names == ("id", "pos", "tag")
        assert (got == value).all()


@pytest.mark.parametrize("timeout", [2**200, math.inf, math.nan, 1e300, 2**2000])
def test_impossible_timeouts_are_refused_before_anything_is_consumed(server, timeout):
    pset = pastset.PastSet()
    e = pset.enter(("exact-timeout", int))
    e.move((1,))
    for call in (
        lambda: e.observe(timeout=timeout),
        lambda: e.observe_many(1, timeout=timeout),
        lambda: e.move((2,), timeout=timeout),
    ):
        with pytest.raises(PastSetValueError, match="timeout must be a finite number of seconds"):
            call()
    assert (e.first(), e.last()) == (0, 1)
    assert e.observe(timeout=1e9) == (1,)


def test_the_server_refuses_impossible_timeouts_from_a_peer_that_skips_the_check(server):
    pset = pastset.PastSet()
    e = pset.enter(("exact-raw", int))
    e.move((1,))
    raw = pset._link()._channel  # the raw channel: bytes in, bytes out, no client-side check
    for timeout in (float("nan"), float("inf"), 2**200):
        reply = wire.decode(raw.call(wire.encode(("observe", e._eid, -1, timeout))))
        assert reply[:2] == (1, "PastSetValueError") and "timeout" in reply[2]
    assert e.observe() == (1,)


def test_nan_template_constants_are_refused(server):
    pset = pastset.PastSet()
    before = pset.enter(("exact-count", int))._eid
    for template in (("x", float("nan")), ("x", complex(0, float("nan"))), ("x", (1, float("nan")))):
        with pytest.raises(PastSetValueError, match="holds NaN"):
            pset.enter(template)
    assert pset.enter(("exact-count2", int))._eid == before + 1  # no element was made for them


def test_an_xfunction_value_that_cannot_be_sent_leaves_its_tuple(server):
    (server.psbin / "xodd.py").write_text(
        "import pastset.element\n"
        "class Element(pastset.element.Element):\n"
        "    def observe(self, index=-1):\n"
        "        data = super().observe(index)\n"
        "        return (data, object()) if data[0] < 0 else data\n"
    )
    pset = pastset.PastSet()
    e = pset.enter(("exact-x", int), xfunction="xodd")
    e.move((-1,))
    e.move((2,))
    with pytest.raises(XFunctionError, match="'xodd' returned a value that cannot be sent.*the tuple stays"):
        e.observe()
    assert (e.first(), e.last()) == (0, 2)
    with pytest.raises(XFunctionError):
        e.observe()
    assert e.first() == 0
    assert e.observe(1) == (2,)
    still_serves(pset)


def test_large_bytes_come_back_exact_and_plain_through_the_server(server):
    """Large bytes ride out of band into the server and out again: the same bytes, plain ``bytes``, in order."""
    import threading

    pset = pastset.PastSet()
    e = pset.enter(("exact-big", bytes))
    big = bytes(range(256)) * (3 << 12)  # 3 MiB: a large frame, received into a buffer of its own
    got: list[tuple] = []
    waiting = threading.Thread(target=lambda: got.append(pastset.PastSet().enter(("exact-big", bytes)).observe()))
    waiting.start()  # blocked before the value arrives: the server sends its held value on
    e.move((big,))
    waiting.join(30)
    assert got and got[0] == (big,) and type(got[0][0]) is bytes
    e.move_many([(big[:100_000],), (b"small",), (big[1:],)])
    assert e.observe_many(3) == [(big[:100_000],), (b"small",), (big[1:],)]
    e.move((b"x" * wire.OUT_OF_BAND, ("nested", b"y" * wire.OUT_OF_BAND)))
    value = e.observe()
    assert value == (b"x" * wire.OUT_OF_BAND, ("nested", b"y" * wire.OUT_OF_BAND))
    assert type(value[0]) is bytes and type(value[1][1]) is bytes
    still_serves(pset)


def test_an_xfunction_gets_large_bytes_as_plain_bytes(server):
    """The server keeps large bytes in the memory they arrived in; user code on the server still gets ``bytes``."""
    (server.psbin / "xbytes.py").write_text(
        "import pastset.element\n"
        "class Element(pastset.element.Element):\n"
        "    def move(self, data):\n"
        "        kinds = tuple(type(field).__name__ for field in data)\n"
        "        return super().move((data[0][:3] + data[0][-3:], kinds, len(data[0])))\n"
    )
    pset = pastset.PastSet()
    e = pset.enter(("exact-xbytes", bytes), xfunction="xbytes")
    big = b"abc" + b"\0" * (2 << 20) + b"xyz"
    e.move((big,))
    e.move_many([(big,)])
    assert e.observe_many(2) == [(b"abcxyz", ("bytes",), len(big))] * 2
    still_serves(pset)
