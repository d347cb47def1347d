"""What pypsrun watches while the application runs, each in a thread of its own.

* :func:`watch_stop`: a stop from pypsmanage (the run's end, announced by the
  scheduler) ends the application: SIGTERM, then SIGKILL.
* :func:`watch_health`: a run that can never progress is reported (once per
  stall) and, unless PSSTALL=report, ended with status 3; with PSFAILFAST the
  first failed task ends it, its traceback shown (:func:`failfast_report`).
* :func:`show_progress`: with PSPROGRESS, one live line on a terminal's stderr
  (clients ready, tasks dispatched and finished).

Each gets a way to open its own proxy of the run's scheduler (Pyro5 proxies
belong to one thread) and returns when the application or the run has ended.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import Pyro5.errors

from pastset.core.stall import STALLED_STATUS, Stall, report
from pastset.settings import Settings

__all__ = ["end_process", "failfast_report", "show_progress", "watch_health", "watch_stop"]

log = logging.getLogger(__name__)


def end_process(app: subprocess.Popen) -> None:
    """Ask ``app`` to end (SIGTERM); kill it if it has not within 5 seconds."""
    app.terminate()
    try:
        app.wait(5)
    except subprocess.TimeoutExpired:
        app.kill()


def watch_stop(open_scheduler: Callable[[], Any], app: subprocess.Popen) -> None:
    """Wait for the run's end; if it comes while ``app`` runs, say why and end ``app``."""
    try:
        with open_scheduler() as sched:
            reason = sched.wait_end(None)
    except Pyro5.errors.CommunicationError:
        return
    if reason and app.poll() is None:
        log.warning("%s; ending the application", reason)
        end_process(app)


def watch_health(
    open_scheduler: Callable[[], Any],
    app: subprocess.Popen,
    settings: Settings,
    run_id: str,
    end_app: Callable[[subprocess.Popen, int], None],
) -> None:
    """While ``app`` runs: report a run that can never progress, and with PSFAILFAST end it on a failure.

    ``end_app(app, verdict)`` ends the application with ``verdict`` as pypsrun's exit status.
    """
    grace = settings.PSSTALLGRACE
    keep_waiting = settings.PSSTALL == "report"
    reported: set[tuple[Any, ...]] = set()
    try:
        with open_scheduler() as sched:
            while app.poll() is None:
                health = sched.health(app.pid, grace, settings.PSFAILFAST)
                failed = health["failed"]
                if settings.PSFAILFAST and failed:
                    task = failed[0]
                    sys.stderr.write(failfast_report(task))
                    sys.stderr.flush()
                    end_app(app, task.get("status") or 1)
                    return
                if health["stall"] is not None:
                    stall = Stall.from_dict(health["stall"])
                    seen = tuple(sorted((w["who"], w["op"], w["element"]) for w in stall.blocked))
                    if seen not in reported:  # once per stall, also when only reporting
                        reported.add(seen)
                        sys.stderr.write(report(stall, run_id, keep_waiting))
                        sys.stderr.flush()
                    if not keep_waiting:
                        end_app(app, STALLED_STATUS)
                        return
                if sched.wait_end(0.5) is not None:
                    return
    except Pyro5.errors.CommunicationError:
        return
    except Exception as err:  # a server of another version: the run goes on, unwatched
        log.warning("cannot watch the run for stalls (%s: %s); it goes on without", type(err).__name__, err)


def show_progress(open_scheduler: Callable[[], Any], app: subprocess.Popen, run_id: str, clients: int) -> None:
    """One live line on stderr while ``app`` runs: clients ready (of ``clients``), tasks dispatched and finished."""
    try:
        with open_scheduler() as sched:
            while app.poll() is None:
                snap = sched.snapshot()
                tasks = snap["tasks"]
                dispatched = sum(1 for t in tasks if t["state"] != "queued")
                finished = sum(1 for t in tasks if t["state"] in ("done", "failed", "stopped"))
                failed = sum(1 for t in tasks if t["state"] == "failed")
                alive = sum(1 for c in snap["clients"] if c["alive"])
                line = (
                    f"pypsrun {run_id}: clients {alive}/{clients} ready, tasks "
                    f"{dispatched}/{len(tasks)} dispatched, {finished} finished"
                    + (f", {failed} failed" if failed else "")
                    + (" [paused]" if snap["paused"] else "")
                )
                sys.stderr.write(f"\r\x1b[K{line}")
                sys.stderr.flush()
                if sched.wait_end(0.5) is not None:
                    break
    except Pyro5.errors.CommunicationError:
        pass
    finally:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def failfast_report(task: dict[str, Any]) -> str:
    """What pypsrun prints when PSFAILFAST ends the run: the task and its traceback."""
    args = " ".join(task.get("args") or [])
    head = (
        f"pypsrun: task {task['id']} ({task['app']}{' ' + args if args else ''}) failed with status "
        f"{task.get('status')}{' on ' + task['host'] if task.get('host') else ''}; PSFAILFAST=yes ends the run:"
    )
    tail = (task.get("stderr_tail") or "").rstrip() or "(no output on stderr)"
    return head + "\n" + "".join(f"  {line}\n" for line in tail.splitlines())
