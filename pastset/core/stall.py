"""Deciding that a run can never progress, from plain data.

A run is *stalled* when all of these hold at once:

- the application and every running task are blocked in operations without a
  timeout, and each has been blocked for at least the grace period;
- no task is queued, or no client is free to run a queued one;
- no blocked operation could go on now, and nothing connected to the space has
  changed anything (moved, observed, begun or ended a wait) for the grace period.

A task that runs and is not blocked, or any operation with a timeout, means the
run may still progress, so a long computation is never taken for a deadlock.

:func:`decide` takes a snapshot as plain data (``Wait.describe()`` rows and the
scheduler's task rows) so it can be tested without a server;
:meth:`pastset.core.scheduler.Scheduler.stall` gathers that data and pypsrun
acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STALLED_STATUS", "Stall", "decide", "party_name", "report"]

#: pypsrun's exit status when it ends a run that can never progress
STALLED_STATUS = 3

#: lines of a failed task's stderr shown in a report
TAIL_LINES = 6


@dataclass
class Stall:
    """Why a run can never progress: who is blocked where, and what failed or never ran."""

    #: the blocked operations, as ``Wait.describe()`` rows plus ``who`` (a readable name)
    blocked: list[dict[str, Any]] = field(default_factory=list)
    #: the failed tasks, as scheduler task rows
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: the tasks still queued that no client is free to run
    queued: list[dict[str, Any]] = field(default_factory=list)
    #: seconds nothing has changed in the space
    quiet_for: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for the wire and ``--json``)."""
        return {"blocked": self.blocked, "failed": self.failed, "queued": self.queued, "quiet_for": self.quiet_for}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stall:
        """The inverse of :meth:`as_dict`."""
        return cls(
            list(data.get("blocked", [])),
            list(data.get("failed", [])),
            list(data.get("queued", [])),
            float(data.get("quiet_for", 0.0)),
        )


def party_name(wait: dict[str, Any], tasks: dict[str, dict[str, Any]], app_pid: int | None = None) -> str:
    """A readable name for whoever made ``wait``: "the app (pid 12)", "task t3 (worker.py) on c1", ..."""
    task = wait.get("task") or ""
    where = f"pid {wait.get('pid') or '?'} on {wait.get('host') or '?'}"
    if task:
        row = tasks.get(task, {})
        app = row.get("app") or wait.get("app") or "?"
        client = row.get("client")
        return f"task {task} ({app}{' on ' + client if client else ''}, {where})"
    if app_pid is not None and wait.get("pid") == app_pid:
        return f"the app {wait.get('app') or ''} ({where})".replace("app  (", "app (")
    return f"{wait.get('app') or 'a client'} ({where})"


def decide(
    waits: Iterable[dict[str, Any]],
    tasks: Iterable[dict[str, Any]],
    *,
    now: float,
    quiet_for: float,
    grace: float,
    app_pid: int | None,
    dispatchable: bool,
    ready_waiter: bool = False,
) -> Stall | None:
    """The :class:`Stall` if the run described can never progress, else None.

    ``waits`` are ``Wait.describe()`` rows (``since`` in ``time.time()``
    seconds, as ``now``); ``tasks`` the scheduler's task rows; ``quiet_for``
    how long nothing has changed in the space; ``app_pid`` the application's
    pid (None: no application to wait for); ``dispatchable`` whether a queued
    task could be handed to a free client now; ``ready_waiter`` whether some
    blocked operation could go on now.
    """
    if ready_waiter or dispatchable or quiet_for < grace:
        return None
    rows = list(waits)
    task_rows = list(tasks)
    by_id = {t["id"]: t for t in task_rows}
    if any(w.get("timeout") is not None for w in rows):
        return None  # someone will wake up by itself: the run may go on
    settled = [w for w in rows if now - float(w["since"]) >= grace]
    if app_pid is not None and not any(w.get("pid") == app_pid and not w.get("task") for w in settled):
        return None  # the application is computing (or not connected): it may still move
    blocked_tasks = {w["task"] for w in settled if w.get("task")}
    running = [t for t in task_rows if t.get("state") == "running"]
    if any(t["id"] not in blocked_tasks for t in running):
        return None  # a task is running and not blocked: a long computation, not a deadlock
    blocked = []
    for w in rows:
        row = dict(w)
        row["who"] = party_name(w, by_id, app_pid)
        blocked.append(row)
    if not blocked:
        return None
    failed = [t for t in task_rows if t.get("state") == "failed"]
    queued = [t for t in task_rows if t.get("state") == "queued"]
    return Stall(blocked, failed, queued, round(quiet_for, 1))


def _tail(text: str, lines: int = TAIL_LINES) -> list[str]:
    return [line for line in (text or "").strip().splitlines() if line.strip()][-lines:]


def report(stall: Stall, run: str = "", keep_waiting: bool = False) -> str:
    """The text pypsrun prints for a stalled run (several lines, ending in a newline)."""
    head = f"pypsrun: run {run} can never progress" if run else "pypsrun: the run can never progress"
    lines = [f"{head}: everything is blocked and nothing has changed for {stall.quiet_for:g} s."]
    for w in stall.blocked:
        lines.append(f"  {w['who']} waits in {w['op']} on {w['template']} (element {w['element']})")
    for t in stall.queued:
        lines.append(f"  task {t['id']} ({t['app']}) is queued but no client is free to run it (see PSPROCS)")
    for t in stall.failed:
        lines.append(
            f"  task {t['id']} ({t['app']} {' '.join(t.get('args') or [])}".rstrip()
            + ") failed"
            + (f" with status {t['status']}" if t.get("status") is not None else "")
            + (" on " + t["host"] if t.get("host") else "")
            + ":"
        )
        lines.extend(f"      {line}" for line in _tail(t.get("stderr_tail", "")) or ["(no output on stderr)"])
    if keep_waiting:
        lines.append("pypsrun: PSSTALL=report: still waiting (Ctrl-C to stop)")
    else:
        lines.append(
            f"pypsrun: ending the run (exit status {STALLED_STATUS}); "
            "set PSSTALL=report to only report, PSSTALLGRACE to change the grace period"
        )
    return "\n".join(lines) + "\n"
