"""The one table of operations (pastset.transport.ops): its names and arities are what the server serves.

Each operation is sent, with exactly the arguments the table lists, to a
:class:`~pastset.server.service.SpaceService` on a real core space in this
process: it must be understood (neither "unknown request" nor a wrong-arity
"malformed request"), and one argument more must be refused as malformed.
"""

from __future__ import annotations

from typing import Any

import pytest

from pastset import wire
from pastset.core.space import Space
from pastset.server.service import SpaceService
from pastset.transport.ops import BLOCKING, ELEMENT, OPERATIONS

pytestmark = pytest.mark.timeout(30)  # a broken table may leave a request waiting


def _reply(service: SpaceService, message: tuple) -> tuple:
    reply: tuple = wire.decode(service.call(wire.encode(message)))
    return reply


def _arguments(names: tuple[str, ...], eid: int, other: tuple) -> tuple:
    """Well-typed values for the argument names of the table."""
    values: dict[str, Any] = {
        "template": ("ops", int),
        "xfunction": None,
        "leases": False,
        "eid": eid,
        "data": (1,),
        "timeout": 0,
        "index": 0,
        "tuples": [(2,)],
        "count": 1,
        "result_eid": None,
        "result": None,
        "value": None,
        "target": other,
        "app": "no-such-app",
        "args": [],
    }
    return tuple(values[name] for name in names)


def test_the_table_names_each_argument_once_and_the_sets_are_drawn_from_it() -> None:
    for name, args in OPERATIONS.items():
        assert len(set(args)) == len(args), name
    assert set(BLOCKING) <= set(OPERATIONS)
    assert BLOCKING <= ELEMENT, "every blocking operation waits on one element, named first"
    assert {name for name, args in OPERATIONS.items() if args and args[0] == "eid"} == ELEMENT
    assert "enter" not in ELEMENT and "delelement" not in ELEMENT  # a template / a target, not an eid


def test_every_operation_of_the_table_is_served_with_exactly_its_arguments() -> None:
    space = Space("ops-test")
    service = SpaceService(space)
    eid = space.enter(("ops", int))
    other = ("ops other", str)
    space.enter(other)
    for name, names in OPERATIONS.items():
        args = _arguments(names, eid, other)
        reply = _reply(service, (name, *args))
        if reply[0] == 1:
            assert "unknown request" not in reply[2], (name, reply)
            assert "malformed request" not in reply[2], (name, reply)
        too_many = _reply(service, (name, *args, None))
        assert too_many[0] == 1 and "malformed request" in too_many[2], (name, too_many)


def test_a_name_outside_the_table_is_an_unknown_request() -> None:
    service = SpaceService(Space("ops-test"))
    assert "nosuchop" not in OPERATIONS
    reply = _reply(service, ("nosuchop",))
    assert reply[0] == 1 and reply[1] == "SerialisationError" and "unknown request" in reply[2]


@pytest.mark.parametrize("name", sorted(BLOCKING - {"ack"}))  # ack waits only for room for its result
def test_a_blocking_operation_with_timeout_zero_on_a_full_or_empty_element_times_out(name: str) -> None:
    space = Space("ops-test")
    service = SpaceService(space)
    eid = space.enter(("blocking", int))
    if name in ("move", "move_many"):
        space.element(eid).delta(1)
        space.element(eid).move((0,))  # full: one more must wait
    names = OPERATIONS[name]
    args = list(_arguments(names, eid, ()))
    if name == "observe":
        args[names.index("index")] = -1
    reply = _reply(service, (name, *args))
    assert reply[:2] == (1, "PastSetTimeoutError"), reply
