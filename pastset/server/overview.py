"""What a run looks like from a scheduler snapshot: client rows and the one-screen summary.

``pypsmanage`` prints these and the web status page serves them, so both show
the same figures under the same names.
"""

from __future__ import annotations

from typing import Any

__all__ = ["clients_of", "status_of"]


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
