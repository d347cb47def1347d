"""Property-based tests over templates, tuples, indices, delta, settings and hosts files,
and a fuzz of the server port with random and truncated messages."""

from __future__ import annotations

import os
import random
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import pastset
from pastset.element import Element, check_delta, check_index, check_template
from pastset.errors import ConfigurationError, ExpiredError, PastSetError, PastSetTypeError, SerialisationError
from pastset.launch.hosts import parse_hosts
from pastset.settings import SPEC, Settings
from pastset.transport.proxies import proxy
from pastset.wire import decode, encode

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.complex_numbers(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(tuple),
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3),
        st.sets(st.integers(), max_size=3),
    ),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (a list is no tuple)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())  # type: ignore[index,attr-defined]
    return a == b


@given(values)
def test_every_supported_value_round_trips_exactly(value):
    assert same(decode(encode(value)), value)


@given(st.lists(st.one_of(hashables, st.sampled_from([int, float, str, bytes, complex, tuple])), max_size=5))
def test_tuples_of_types_and_hashable_constants_are_templates(parts):
    template = tuple(parts)
    assert check_template(template) is template
    assert decode(encode(template)) == template


@given(st.one_of(st.lists(st.integers()), st.text(), st.integers(), st.dictionaries(st.text(), st.integers())))
def test_non_tuples_are_never_templates(template):
    with pytest.raises(PastSetTypeError):
        check_template(template)


@given(st.one_of(st.integers(), st.floats(), st.text(), st.none(), st.booleans(), st.lists(st.integers())))
def test_index_is_an_integer_or_a_type_error(index):
    if isinstance(index, int) and not isinstance(index, bool):
        assert check_index(index) == index
    else:
        with pytest.raises(PastSetTypeError):
            check_index(index)


@given(st.one_of(st.integers(), st.floats(), st.text(), st.none(), st.booleans()))
def test_delta_is_a_whole_number_or_a_clear_error(value):
    try:
        result = check_delta(value)
    except PastSetError as err:
        assert isinstance(err, (TypeError, ValueError))
        return
    if value is None:
        assert result is None
    else:
        assert type(result) is int and result == value  # a whole number, as an int (2.0 becomes 2)


@given(st.sampled_from(sorted(SPEC)), st.text(max_size=12))
def test_any_setting_value_loads_or_falls_back_with_a_named_warning(key, text):
    if key in ("PSCONFHELP",):
        return  # a path that is executed: covered by its own tests
    if "\x00" in text:
        return  # cannot be in an environment
    s = Settings.load(environ={key: text}, files=[])
    if s.problems:
        assert key in s.problems[0]
        assert getattr(s, key) == getattr(Settings(), key)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_hosts_files_parse_or_name_the_bad_line(text):
    try:
        entries = parse_hosts(text, "hosts")
    except ConfigurationError as err:
        assert str(err).startswith("hosts:")
        return
    for entry in entries:
        assert entry.name and (entry.slots is None or entry.slots >= 1)


class ElementModel(RuleBasedStateMachine):
    """The element against a plain list: moves, observes, indexed observes, axe, delta."""

    @initialize()
    def start(self) -> None:
        self.element = Element(("m", int))
        self.log: list[tuple[int]] = []
        self.first = 0
        self.freed = 0
        self.delta: int | None = None

    def room(self) -> bool:
        return not self.delta or self.delta <= 0 or len(self.log) - self.first < self.delta

    @precondition(lambda self: self.room())
    @rule(value=st.integers())
    def move(self, value: int) -> None:
        self.element.move((value,))
        self.log.append((value,))

    @precondition(lambda self: self.first < len(self.log))
    @rule()
    def observe(self) -> None:
        assert self.element.observe() == self.log[self.first]
        self.first += 1

    @rule(data=st.data())
    def observe_indexed(self, data: st.DataObject) -> None:
        if not self.log:
            return
        index = data.draw(st.integers(0, len(self.log) - 1))
        if index < self.freed:
            with pytest.raises(ExpiredError):
                self.element.observe(index)
        else:
            assert self.element.observe(index) == self.log[index]

    @rule(index=st.integers(-3, 40))
    def axe(self, index: int) -> None:
        self.element.axe(index)
        self.freed = max(self.freed, min(index, self.first))

    @rule(value=st.one_of(st.none(), st.integers(-2, 6)))
    def set_delta(self, value: int | None) -> None:
        assert self.element.delta(value) == (self.delta if value is None else value)
        if value is not None:
            self.delta = value

    @invariant()
    def pointers(self) -> None:
        if hasattr(self, "element"):
            assert (self.element.first(), self.element.last()) == (self.first, len(self.log))
            assert self.element.stored() == len(self.log) - self.freed


TestElementModel = ElementModel.TestCase
TestElementModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# -------------------------------------------------------------------- fuzzing
def _send(address: str, data: bytes) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(2)
            while sock.recv(4096):
                pass
        except OSError:
            pass


def test_random_and_truncated_messages_do_not_hurt_the_server(server):
    pset = pastset.PastSet()
    keep = pset.enter(("keep", int))
    for i in range(10):
        keep.move((i,))
    rng = random.Random(1234)
    header = b"PYRO" + struct.pack(">HHHH", 502, 1, 0, 0)  # a plausible start of a Pyro5 frame
    for _ in range(150):
        kind = rng.randrange(4)
        if kind == 0:
            payload = rng.randbytes(rng.randrange(1, 300))
        elif kind == 1:
            payload = header[: rng.randrange(1, len(header))]
        elif kind == 2:
            payload = header + rng.randbytes(rng.randrange(0, 60))
        else:
            payload = b"PYRO" + rng.randbytes(20) + b"\x00" * rng.randrange(0, 50)
        _send(server.address, payload)
    # the same on the direct channel's port: random bytes, truncated and lying frames, bad handshakes
    assert pset._channel is not None, "the server offers its direct channel"
    channel = f"{pset._channel[0]}:{pset._channel[1]}"
    for _ in range(150):
        kind = rng.randrange(4)
        if kind == 0:
            payload = rng.randbytes(rng.randrange(1, 300))
        elif kind == 1:
            payload = struct.pack("!IH", rng.randrange(0, 2**32), rng.randrange(0, 2**16))[: rng.randrange(1, 7)]
        elif kind == 2:
            body = rng.randbytes(rng.randrange(0, 60))
            count = rng.choice([0, 0, 1, 3, 5000])
            table = b"".join(struct.pack("!Q", rng.randrange(0, 2**40)) for _ in range(min(count, 4)))
            payload = struct.pack("!IH", max(0, len(body) + rng.randrange(-5, 50)), count) + table + body
        else:
            hello = encode({"secret": rng.randbytes(8).hex(), "run": rng.choice([server.run, "x"]), "task": 7})
            payload = struct.pack("!IH", len(hello), 0) + hello + rng.randbytes(rng.randrange(0, 40))
        _send(channel, payload)
    # requests that pass the transport (Pyro5 and the channel) but carry garbage for pastset
    for raw in (proxy(pset._uri, pset._secret), pset._link()._channel):  # type: ignore[attr-defined]
        for _ in range(150):
            garbage = rng.randbytes(rng.randrange(0, 80))
            reply = decode(raw.call(garbage))
            assert reply[0] == 1  # an error reply, never a crash
        for bad in (encode(("move",)), encode(("move", 10**9, (1,), None)), encode(("nosuchop", 1)), encode(42)):
            assert decode(raw.call(bad))[0] == 1
    with pytest.raises(SerialisationError):
        decode(b"\xc1")
    # everyone else is still served, and nothing stored was corrupted
    assert [keep.observe(i) for i in range(10)] == [(i,) for i in range(10)]
    other = pastset.PastSet().enter(("other", int))
    other.move((1,))
    assert other.observe() == (1,)
    assert server.proc.poll() is None
    assert os.path.exists(f"/proc/{server.proc.pid}")
