"""A space's activity on its own (pastset.core.activity): who blocks, who waits on what, what changed."""

from __future__ import annotations

import threading

from pastset.core.activity import Activity, ElementMonitor
from pastset.core.element import Element, Waiter
from pastset.core.waits import Caller


def test_blocked_operations_are_counted_per_task_and_every_change_moves_the_generation() -> None:
    task = ["t1"]
    activity = Activity(lambda: task[0], {})
    start = activity.generation
    activity.waiting(1)
    activity.waiting(1)
    task[0] = "t2"
    activity.waiting(1)
    assert activity.blocked == {"t1": 2, "t2": 1}
    activity.waiting(-1)
    assert activity.blocked == {"t1": 2}  # a task with no blocked call is forgotten
    activity.changed()
    activity.task_gone("t1")
    assert activity.blocked == {} and activity.generation == start + 6


def test_a_waiter_is_recorded_with_its_caller_and_counted_for_its_own_task() -> None:
    activity = Activity(lambda: "the completing thread", {3: ("jobs", int)})
    element = Element(("shadowed",))
    element.eid = 3
    waiter = Waiter("observe", caller=Caller(task="t7", pid=9), timeout=2.0)
    activity.waiting_for(1, waiter, element)
    [wait] = activity.waits.snapshot()
    assert (wait.caller.pid, wait.eid, wait.template, wait.op, wait.timeout) == (9, 3, ("jobs", int), "observe", 2.0)
    assert activity.blocked == {"t7": 1}
    activity.waiting_for(-1, waiter, element)
    assert len(activity.waits) == 0 and activity.blocked == {}
    anonymous = Waiter("move")
    activity.waiting_for(1, anonymous, element)
    assert anonymous.task == "the completing thread"


def test_waiting_on_the_activity_wakes_on_a_change() -> None:
    activity = Activity(lambda: None, {})
    before = activity.generation
    with activity:
        threading.Timer(0.01, activity.waiting, (1,)).start()
        assert activity.wait_for(lambda: activity.generation != before, timeout=5.0)


def test_an_element_monitor_counts_the_changes_of_its_element_per_task() -> None:
    task = ["t1"]
    activity = Activity(lambda: task[0], {})
    monitor = ElementMonitor(activity)
    element = Element(("jobs", int))
    element.attach(monitor)
    element.move((1,))
    task[0] = None  # the application
    element.move((2,))
    element.observe()
    assert monitor.counts == {"t1": 1, "": 2} and activity.generation == 3
