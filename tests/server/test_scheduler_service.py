"""The scheduler's Pyro5 face (pastset.server.scheduler_service): plain msgpack replies and the client's connection.

A real core Scheduler on a real Space, in this process; a Pyro5 connection
is stood in for through Pyro5's call context, as the daemon's worker thread
sets it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Pyro5.callcontext
import Pyro5.serializers
import pytest

from pastset.core.scheduler import Scheduler
from pastset.core.space import Space
from pastset.server.scheduler_service import SchedulerService

MSGPACK = Pyro5.serializers.serializers["msgpack"]


class Connection:
    """What Pyro5 keeps per connection; the service adds ``pastset_client``."""


@pytest.fixture
def service(tmp_path: Path) -> SchedulerService:
    return SchedulerService(Scheduler(Space("sched-svc", [str(tmp_path)])))


@pytest.fixture
def connection() -> Iterator[Connection]:
    conn = Connection()
    Pyro5.callcontext.current_context.client = conn
    try:
        yield conn
    finally:
        Pyro5.callcontext.current_context.client = None


def round_trip(value: Any) -> Any:
    """``value`` as the client gets it over Pyro5's msgpack."""
    return MSGPACK.loads(MSGPACK.dumps(value))


def test_a_registering_client_s_connection_remembers_its_id(service: SchedulerService, connection: Connection) -> None:
    cid = service.register({"host": "h1", "cpus": 2})
    assert connection.pastset_client == cid  # type: ignore[attr-defined]
    again = service.register({"host": "h2"})
    assert again != cid and connection.pastset_client == again  # type: ignore[attr-defined]


def test_without_a_pyro5_connection_register_still_works(service: SchedulerService) -> None:
    Pyro5.callcontext.current_context.client = None
    cid = service.register({"host": "h"})
    assert cid in {c["id"] for c in service.snapshot()["clients"]}


def test_the_snapshot_adds_the_elements_the_waits_and_the_run(service: SchedulerService) -> None:
    space = service.scheduler.space
    eid = space.enter(("snap", int))
    space.element(eid).move(("snap", 1))
    data = round_trip(service.snapshot())
    assert data["run"] == "sched-svc"
    assert [row["id"] for row in data["elements"]] == [eid]
    assert data["elements"][0]["template"] == repr(("snap", int))
    assert data["waiting"] == []


def test_with_a_redis_store_the_elements_come_from_its_admin(tmp_path: Path) -> None:
    class Admin:
        def describe(self) -> list[dict[str, Any]]:
            return [{"id": 77, "template": "('in redis',)"}]

    service = SchedulerService(Scheduler(Space("with-store", [str(tmp_path)])), Admin())
    service.scheduler.space.enter(("local", int))
    assert service.snapshot()["elements"] == [{"id": 77, "template": "('in redis',)"}]


def test_a_blocked_observe_shows_in_the_snapshot_s_waits(service: SchedulerService) -> None:
    space = service.scheduler.space
    eid = space.enter(("blocked", int))
    observer = threading.Thread(target=lambda: space.element(eid).observe())
    observer.start()
    try:
        deadline = threading.Event()
        for _ in range(500):
            if service.snapshot()["waiting"]:
                break
            deadline.wait(0.01)  # polling the snapshot, bounded
        waiting = round_trip(service.snapshot())["waiting"]
        assert len(waiting) == 1 and (waiting[0]["element"], waiting[0]["op"]) == (eid, "observe")
    finally:
        space.element(eid).move(("blocked", 1))
        observer.join(10)
    assert service.snapshot()["waiting"] == []


def test_stop_without_a_reason_names_pypsmanage_and_wait_end_returns_it(service: SchedulerService) -> None:
    assert service.wait_end(0) is None, "the run has not ended"
    service.stop()
    assert service.wait_end(5) == "the run was stopped by pypsmanage"
    assert service.heartbeat("c-unknown") is None, "the run ended"


def test_stop_with_a_reason_keeps_it(service: SchedulerService) -> None:
    service.stop("maintenance")
    assert service.wait_end(5) == "maintenance"


def test_health_lists_failed_tasks_only_when_asked(tmp_path: Path) -> None:
    service = SchedulerService(Scheduler(Space("health", [str(tmp_path)]), check_apps=False))
    cid = service.register({"host": "h"})
    tid = service.scheduler.spawn("worker.py", ["a"])
    task = service.next_task(cid, 5)
    assert task is not None and task["id"] == tid
    service.task_done(cid, tid, 3, "Traceback: boom")
    health = round_trip(service.health())
    assert set(health) == {"stall", "failed"} and health["failed"] == []
    [failed] = round_trip(service.health(failed=True))["failed"]
    assert failed["id"] == tid and failed["app"] == "worker.py"


def test_the_record_is_plain_msgpack_data(service: SchedulerService) -> None:
    record = service.record()
    assert round_trip(record) == record
