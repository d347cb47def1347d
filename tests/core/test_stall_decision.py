"""core.stall.decide from plain data: when a run can never progress, and every way it still can."""

from __future__ import annotations

from pastset.core.stall import STALLED_STATUS, Stall, decide, report

NOW = 1000.0
APP = 4242


def wait(
    task: str = "",
    pid: int = APP,
    op: str = "observe",
    element: int = 1,
    template: str = "('results', float)",
    since: float = NOW - 10,
    timeout: float | None = None,
    app: str = "master.py",
) -> dict:
    return {
        "task": task,
        "host": "h1",
        "pid": pid,
        "app": app,
        "element": element,
        "template": template,
        "op": op,
        "since": since,
        "timeout": timeout,
    }


def task(tid: str, state: str, app: str = "worker.py", **more: object) -> dict:
    return {
        "id": tid,
        "app": app,
        "args": [],
        "state": state,
        "client": "c1" if state == "running" else "",
        "host": "h1",
        "status": None,
        "stderr_tail": "",
        **more,
    }


def verdict(waits: list[dict], tasks: list[dict], **kw: object) -> Stall | None:
    args: dict = {"now": NOW, "quiet_for": 5.0, "grace": 2.0, "app_pid": APP, "dispatchable": False}
    args.update(kw)
    return decide(waits, tasks, **args)


def test_app_alone_blocked_forever_is_a_stall_naming_it():
    found = verdict([wait()], [])
    assert found is not None
    assert [w["who"] for w in found.blocked] == ["the app master.py (pid 4242 on h1)"]
    text = report(found, "r1")
    assert "the app master.py (pid 4242 on h1) waits in observe on ('results', float) (element 1)" in text
    assert f"exit status {STALLED_STATUS}" in text


def test_a_running_task_that_is_not_blocked_means_progress():
    assert verdict([wait()], [task("t1", "running")]) is None


def test_every_running_task_blocked_too_is_a_stall():
    found = verdict([wait(), wait("t1", pid=7, element=2, template="('fork', 1)")], [task("t1", "running")])
    assert found is not None
    assert "task t1 (worker.py on c1, pid 7 on h1)" in [w["who"] for w in found.blocked]


def test_any_operation_with_a_timeout_means_progress():
    assert verdict([wait(), wait("t1", pid=7, timeout=30.0)], [task("t1", "running")]) is None
    assert verdict([wait(timeout=5.0)], []) is None


def test_a_grace_period_of_quiet_is_needed():
    assert verdict([wait()], [], quiet_for=1.0) is None
    assert verdict([wait(since=NOW - 0.5)], []) is None  # blocked only just now


def test_a_dispatchable_queued_task_or_a_ready_waiter_means_progress():
    assert verdict([wait()], [task("t2", "queued")], dispatchable=True) is None
    assert verdict([wait()], [], ready_waiter=True) is None


def test_queued_tasks_no_client_can_take_are_named():
    found = verdict([wait(), wait("t1", pid=7)], [task("t1", "running", app="boss.py"), task("t2", "queued")])
    assert found is not None and [t["id"] for t in found.queued] == ["t2"]
    assert "task t2 (worker.py) is queued but no client is free" in report(found)


def test_the_app_computing_means_progress():
    assert verdict([wait("t1", pid=7)], [task("t1", "running")]) is None


def test_failed_tasks_are_reported_with_their_stderr_tail():
    tail = 'Traceback (most recent call last):\n  File "worker.py", line 3\nZeroDivisionError: division by zero\n'
    found = verdict([wait()], [task("t1", "failed", status=1, stderr_tail=tail)])
    assert found is not None
    text = report(Stall.from_dict(found.as_dict()))
    assert "task t1 (worker.py) failed with status 1 on h1:" in text
    assert "      ZeroDivisionError: division by zero" in text


def test_report_only_says_it_keeps_waiting():
    found = verdict([wait()], [])
    assert found is not None
    assert "still waiting" in report(found, keep_waiting=True)
    assert "ending the run" not in report(found, keep_waiting=True)


# ------------------------------------------------------- the scheduler's side
def test_scheduler_stall_from_a_real_space_and_the_end_said_once(caplog):
    import time

    from pastset.core.scheduler import Scheduler
    from pastset.core.space import Space
    from pastset.core.waits import Caller, Wait

    space = Space("stall-unit")
    sched = Scheduler(space, check_apps=False)
    eid = space.enter(("results", float))
    key = space.waits.add(Wait(Caller(pid=APP, app="master.py"), eid, ("results", float), "observe", time.time() - 5))
    assert sched.stall(APP, 0.0) is not None  # nothing moves, the app waits: stalled at once with no grace
    assert sched.stall(APP, 30.0) is None  # not for a grace of 30 s
    assert sched.stall(APP + 1, 0.0) is None  # another process waits; the app is computing
    sched.pause()
    assert sched.stall(APP, 0.0) is None  # an operator holds the run
    sched.resume()
    space.pause(True, "results")
    assert sched.stall(APP, 0.0) is None  # or one element
    space.pause(False, "results")
    space.waits.remove(key)
    assert sched.stall(APP, 0.0) is None  # nobody waits

    sched.spawn("never.py")
    with caplog.at_level("WARNING"):
        sched.end()
        sched.end("again")
    assert [r.getMessage() for r in caplog.records].count("1 spawned task(s) never ran: never.py") == 1


def test_a_heartbeat_after_the_end_is_not_a_giving_up():
    from pastset.core.scheduler import Scheduler
    from pastset.core.space import Space

    sched = Scheduler(Space("beat-unit"), check_apps=False)
    cid = sched.register({"host": "h"})
    assert sched.heartbeat(cid) is True
    sched.end()
    assert sched.heartbeat(cid) is None  # ended: stop quietly
    assert sched.heartbeat("c99") is None
    other = Scheduler(Space("beat-unit-2"), check_apps=False)
    gone = other.register({"host": "h"})
    other.client_gone(gone, "test")
    assert other.heartbeat(gone) is False  # given up on: say so
