"""The contract between the channel's loop and its service (pastset.transport.serving): Reply and Pending."""

from __future__ import annotations

import time

import pytest

from pastset.core.waiter import Waiter
from pastset.transport.serving import Pending, Reply


def test_a_reply_keeps_its_parts_and_hands_over_nothing_unless_told() -> None:
    parts: list[bytes | memoryview] = [b"body", memoryview(b"buffer")]
    reply = Reply(parts)
    assert reply.parts is parts and reply.taken is None
    taken = (object(), [3, 4], [(1,), (2,)])
    assert Reply([b"x"], taken).taken is taken


def test_reply_and_pending_carry_only_their_fields() -> None:
    with pytest.raises(AttributeError):
        Reply([b""]).extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        Pending(None, Waiter("observe")).extra = 1  # type: ignore[attr-defined]


def test_a_waiter_without_timeout_is_pending_for_as_long_as_it_takes() -> None:
    element = object()
    waiter = Waiter("observe")
    pending = Pending(element, waiter)
    assert pending.element is element and pending.waiter is waiter
    assert pending.until is None


def test_a_waiter_with_a_timeout_gives_up_that_long_after_it_was_queued() -> None:
    before = time.monotonic()
    pending = Pending(None, Waiter("move", data=[(1,)], timeout=30.0))
    after = time.monotonic()
    assert pending.until is not None
    assert before + 30.0 <= pending.until <= after + 30.0


@pytest.mark.parametrize("timeout", [0.0, -5.0])
def test_a_zero_or_negative_timeout_gives_up_at_once_never_in_the_past(timeout: float) -> None:
    before = time.monotonic()
    pending = Pending(None, Waiter("observe", timeout=timeout))
    after = time.monotonic()
    assert pending.until is not None and before <= pending.until <= after
