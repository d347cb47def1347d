"""What a run looks like from a scheduler snapshot: client rows and the one-screen summary.

``pypsmanage`` prints these and the web status page serves them, so both show
the same figures under the same names.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["clients_of", "elements_of", "status_of", "tasks_of", "waiting_of"]


def clients_of(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """Client rows with their specs flattened in."""
    return [{**c["specs"], **{k: v for k, v in c.items() if k != "specs"}} for c in snap["clients"]]


def status_of(snap: dict[str, Any]) -> dict[str, Any]:
    """The one-screen summary of a run."""
    tasks = snap["tasks"]
    state = (
        "stopped" if snap.get("stopped") else "ended" if snap["ended"] else "paused" if snap["paused"] else "running"
    )
    return {
        "run": snap["run"],
        "state": state,
        "clients alive": sum(1 for c in snap["clients"] if c["alive"]),
        "clients dead": sum(1 for c in snap["clients"] if not c["alive"]),
        "tasks queued": sum(1 for t in tasks if t["state"] == "queued"),
        "tasks running": sum(1 for t in tasks if t["state"] == "running"),
        "tasks done": sum(1 for t in tasks if t["state"] == "done"),
        "tasks failed": sum(1 for t in tasks if t["state"] == "failed"),
        "elements": len(snap["elements"]),
        "moves/s": snap.get("moves_per_s", 0),
        "observes/s": snap.get("observes_per_s", 0),
        "halted": snap["halted"],
    }


def _who(w: dict[str, Any]) -> str:
    name = f"task {w['task']}" if w.get("task") else (w.get("app") or "client")
    return f"{name} pid {w.get('pid') or '?'}@{w.get('host') or '?'}"


def waiting_of(snap: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
    """One row per blocked operation: who (task, host, pid, app), which element and operation, for how long."""
    now = time.time() if now is None else now
    rows = []
    for w in snap.get("waiting", []):
        rows.append({**w, "who": _who(w), "waited_s": round(max(0.0, now - float(w["since"])), 1)})
    return rows


def _summary(waits: list[dict[str, Any]], text: Any) -> str:
    return ", ".join(text(w) for w in waits)


def elements_of(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """Element rows with a ``waiting`` column: who is blocked on each ("task t2 observe, app move"), and how many."""
    waits = snap.get("waiting", [])
    rows = []
    for e in snap["elements"]:
        mine = [w for w in waits if w.get("element") == e["id"]]
        label = lambda w: f"{'task ' + w['task'] if w.get('task') else (w.get('app') or 'client')} {w['op']}"  # noqa: E731
        # ``blocked`` keeps the element's own count of queued operations (the snapshot's ``waiting``)
        rows.append({**e, "blocked": e.get("waiting", len(mine)), "waiting": _summary(mine, label)})
    return rows


def tasks_of(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """Task rows with a ``waiting`` column: the operation and element each running task is blocked in."""
    waits = snap.get("waiting", [])
    rows = []
    for t in snap["tasks"]:
        mine = [w for w in waits if w.get("task") == t["id"]]
        rows.append({**t, "waiting": _summary(mine, lambda w: f"{w['op']} {w['template']}")})
    return rows
