"""The scheduler on its own: tasks in spawn order to idle clients, halt, failures, lost clients."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from pastset.core.scheduler import Scheduler
from pastset.core.space import Space
from pastset.errors import AppNotFoundError, PastSetError, PastSetTimeoutError, RunEndedError


@pytest.fixture
def scheduler(tmp_path: Path) -> Scheduler:
    (tmp_path / "work.py").write_text("")
    return Scheduler(Space("r", [str(tmp_path)]))


def test_tasks_go_out_in_spawn_order_with_their_arguments(scheduler: Scheduler) -> None:
    c1, c2 = scheduler.register({"host": "h1"}), scheduler.register({"host": "h2"})
    ids = [scheduler.spawn("work.py", [n, "x"]) for n in range(3)]
    got = [scheduler.next_task(c, timeout=1) for c in (c1, c2, c1)]
    assert [t["id"] for t in got if t] == ids
    assert [t["args"] for t in got if t] == [["0", "x"], ["1", "x"], ["2", "x"]]
    with pytest.raises(PastSetTimeoutError):
        scheduler.next_task(c2, timeout=0.05)


def test_an_app_outside_psbin_is_refused_naming_psbin(scheduler: Scheduler) -> None:
    with pytest.raises(AppNotFoundError, match="not a file inside PSBIN"):
        scheduler.spawn("nowhere.py")
    assert scheduler.snapshot()["tasks"] == []


def test_halt_lets_earlier_spawns_go_out_then_stops_clients(scheduler: Scheduler) -> None:
    cid = scheduler.register({"host": "h"})
    tid = scheduler.spawn("work.py")
    scheduler.halt()
    task = scheduler.next_task(cid, timeout=1)
    assert task is not None and task["id"] == tid
    assert scheduler.next_task(cid, timeout=1) is None


def test_a_failed_task_and_a_lost_client_are_recorded(scheduler: Scheduler) -> None:
    c1, c2 = scheduler.register({"host": "h1"}), scheduler.register({"host": "h2"})
    t1, t2 = scheduler.spawn("work.py"), scheduler.spawn("work.py")
    scheduler.next_task(c1, timeout=1)
    scheduler.next_task(c2, timeout=1)
    scheduler.task_done(c1, t1, 3, "Traceback ... ZeroDivisionError")
    scheduler.client_gone(c2, "client connection lost")
    tasks = {t["id"]: t for t in scheduler.snapshot()["tasks"]}
    assert tasks[t1]["state"] == "failed" and tasks[t1]["status"] == 3
    assert tasks[t2]["state"] == "failed" and "client connection lost" in tasks[t2]["stderr_tail"]
    assert scheduler.heartbeat(c1) is True
    assert scheduler.heartbeat(c2) is False, "a client given up on is told to stop"


def test_after_the_end_nothing_more_is_accepted(scheduler: Scheduler) -> None:
    scheduler.end()
    with pytest.raises(RunEndedError):
        scheduler.spawn("work.py")
    with pytest.raises(RunEndedError):
        scheduler.register({"host": "late"})


def _blocked_first_task(tmp_path: Path, slots: int) -> tuple[Scheduler, threading.Thread]:
    """A client with ``slots`` slots, two tasks spawned, the first one blocked for good in observe."""
    (tmp_path / "work.py").write_text("")
    serving = threading.local()
    space = Space("r", [str(tmp_path)], current_task=lambda: getattr(serving, "task", None))
    scheduler = Scheduler(space)
    cid = scheduler.register({"host": "h", "slots": slots})
    scheduler.spawn("work.py")
    scheduler.spawn("work.py")
    first = scheduler.next_task(cid, timeout=1)
    assert first is not None
    jobs = space.element(space.enter(("jobs", int)))

    def worker() -> None:
        serving.task = first["id"]
        with contextlib.suppress(PastSetError):
            jobs.observe()  # no job will ever come; the run's end wakes it

    blocked = threading.Thread(target=worker, daemon=True)
    blocked.start()
    return scheduler, blocked


def test_a_task_queued_behind_a_slot_blocked_for_good_does_not_keep_the_run_from_ending(tmp_path: Path) -> None:
    """pyPastSet's mcpiserver spawns two workers on one client slot and halts: the first blocks for
    good once the jobs are gone, so the second can never start. The run is quiet and ends (the
    second is reported as never run) instead of waiting for ever."""
    scheduler, blocked = _blocked_first_task(tmp_path, slots=1)
    assert scheduler.finish(True, timeout=10) is True
    blocked.join(5)
    assert not blocked.is_alive()
    assert [t["state"] for t in scheduler.snapshot()["tasks"]][1] == "queued"


def test_a_queued_task_with_a_free_slot_keeps_the_run_going(tmp_path: Path) -> None:
    scheduler, blocked = _blocked_first_task(tmp_path, slots=2)
    assert scheduler.finish(True, timeout=0.5) is False, "the second task could still start and move a job"
    blocked.join(5)
