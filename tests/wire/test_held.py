"""Large bytes out of band: HeldBytes stands for the bytes it views, released() gives user code plain bytes."""

from __future__ import annotations

import pytest

from pastset.wire.held import HeldBytes, _Beside, _beside, released
from pastset.wire.kinds import OUT_OF_BAND


def test_held_bytes_has_the_length_equality_hash_and_text_of_its_bytes() -> None:
    held = HeldBytes(bytearray(b"abc"))
    assert len(held) == held.nbytes == 3
    assert bytes(held) == b"abc" and type(bytes(held)) is bytes
    assert held == b"abc" and held == HeldBytes(b"abc") and held != b"abd"
    assert held != bytearray(b"abc") and held != "abc", "only bytes and HeldBytes are equal to it"
    assert hash(held) == hash(b"abc")
    assert b"abc" in {held} and held in {b"abc": 1}, "usable wherever the bytes were"
    assert repr(held) == repr(b"abc")


def test_held_bytes_views_the_memory_it_arrived_in_and_cannot_change_it() -> None:
    buffer = bytearray(b"abcd")
    held = HeldBytes(buffer)
    buffer[0:1] = b"z"
    assert bytes(held) == b"zbcd", "a view, not a copy"
    with pytest.raises(TypeError):
        held.view[0] = 0


def test_released_makes_every_held_value_in_tuples_and_lists_plain_bytes() -> None:
    value = ("k", [HeldBytes(b"x"), (1, HeldBytes(b"yy"))], HeldBytes(b"z"))
    plain = released(value)
    assert plain == ("k", [b"x", (1, b"yy")], b"z")
    assert type(plain[1]) is list and type(plain[1][1]) is tuple
    assert all(type(b) is bytes for b in (plain[1][0], plain[1][1][1], plain[2]))
    assert type(released(HeldBytes(b"q"))) is bytes


def test_released_returns_the_same_object_when_nothing_is_held() -> None:
    value = ("k", [1, (2, b"b")], {"d": 1})
    assert released(value) is value
    assert released(value[1]) is value[1]


def test_bytes_fields_from_the_limit_up_are_marked_to_travel_beside() -> None:
    big, small = b"x" * OUT_OF_BAND, b"y" * (OUT_OF_BAND - 1)
    marked = _beside((1, big, small, bytearray(big)))
    assert marked is not None
    assert type(marked[1]) is _Beside and marked[1].value is big, "marked, not copied"
    assert marked[0] == 1 and marked[2] is small and type(marked[3]) is bytearray
    assert _beside((1, small)) is None
    assert _beside(([big],)) is None, "only the tuple's own fields"
