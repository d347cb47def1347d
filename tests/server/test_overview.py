"""The views pypsmanage and the web page share, computed from a scheduler snapshot."""

from __future__ import annotations

from typing import Any

from pastset.server.overview import clients_of, status_of


def snapshot(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "run": "r1",
        "ended": False,
        "paused": False,
        "halted": True,
        "clients": [
            {"id": "c1", "alive": True, "specs": {"host": "h1", "cores": 2}},
            {"id": "c2", "alive": False, "specs": {"host": "h2", "cores": 4}},
        ],
        "tasks": [{"state": s} for s in ("queued", "running", "running", "done", "failed", "failed")],
        "elements": [{}, {}, {}],
        "moves_per_s": 12.5,
    }
    return {**base, **extra}


def test_the_summary_counts_what_the_snapshot_holds() -> None:
    status = status_of(snapshot())
    assert status == {
        "run": "r1",
        "state": "running",
        "clients alive": 1,
        "clients dead": 1,
        "tasks queued": 1,
        "tasks running": 2,
        "tasks done": 1,
        "tasks failed": 2,
        "elements": 3,
        "moves/s": 12.5,
        "observes/s": 0,
        "halted": True,
    }


def test_the_state_names_the_strongest_condition() -> None:
    assert status_of(snapshot(paused=True))["state"] == "paused"
    assert status_of(snapshot(paused=True, ended=True))["state"] == "ended"
    assert status_of(snapshot(ended=True, stopped=True))["state"] == "stopped"


def test_client_rows_flatten_their_specs() -> None:
    assert clients_of(snapshot()) == [
        {"host": "h1", "cores": 2, "id": "c1", "alive": True},
        {"host": "h2", "cores": 4, "id": "c2", "alive": False},
    ]


def test_element_rows_say_who_waits_and_how_many() -> None:
    from pastset.server.overview import elements_of

    snap = snapshot(
        elements=[
            {"id": 1, "template": "('jobs', int)", "waiting": 2},
            {"id": 2, "template": "('r', int)", "waiting": 0},
        ],
        waiting=[
            {"element": 1, "task": "t1", "app": "w.py", "op": "observe"},
            {"element": 1, "task": "", "app": "master.py", "op": "observe"},
        ],
    )
    jobs, results = elements_of(snap)
    assert jobs["blocked"] == 2 and "task t1 observe" in jobs["waiting"] and "master.py observe" in jobs["waiting"]
    assert results["blocked"] == 0
