"""The registry of blocked operations: what views and stall detection read."""

from __future__ import annotations

import json

from pastset.core.waits import Caller, Wait, WaitRegistry


def test_waits_are_listed_oldest_first_until_removed() -> None:
    registry = WaitRegistry()
    app, task = Caller(host="h1", pid=10, app="master.py"), Caller(task="t3", host="h2", pid=20, app="worker.py")
    later = registry.add(Wait(task, 2, ("jobs", int), "observe", since=200.0))
    first = registry.add(Wait(app, 1, ("results", float), "observe", since=100.0, timeout=5.0))
    assert [w.caller for w in registry.snapshot()] == [app, task]
    assert len(registry) == 2
    before = registry.changed
    registry.remove(first)
    registry.remove(first)  # twice: ignored
    assert [w.caller for w in registry.snapshot()] == [task]
    assert registry.changed >= before
    registry.remove(later)
    assert registry.snapshot() == [] and len(registry) == 0


def test_a_wait_describes_itself_as_plain_data() -> None:
    wait = Wait(Caller(task="t1", host="h", pid=7, app="a.py"), 4, ("results", float), "move", 1.5, None)
    described = wait.describe()
    assert json.loads(json.dumps(described)) == described
    assert described == {
        "task": "t1",
        "host": "h",
        "pid": 7,
        "app": "a.py",
        "element": 4,
        "template": "('results', float)",  # as the author wrote it
        "op": "move",
        "since": 1.5,
        "timeout": None,
    }
