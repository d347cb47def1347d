"""Ending a run's processes and keeping what the run leaves behind.

A child is stopped with a bounded, escalating shutdown (:func:`stop`): it may
end by itself, then its lifeline (its standard input) is closed, then it is
killed; the clients are stopped all at once, then the server
(:func:`stop_all`), so nothing outlives its run and no stop waits on another.
An ended run leaves its record, for ``pypsmanage report``, and with PSREPORT
an HTML report (:func:`keep_run_record`).  None of this needs the run's state
beyond what it is given; :meth:`pastset.launch.run.Run.shutdown` decides when.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import Pyro5.errors

from pastset.errors import PastSetError
from pastset.launch.children import Process
from pastset.proc import LocalProcess
from pastset.runs import save_record

__all__ = ["keep_run_record", "stop", "stop_all"]

log = logging.getLogger(__name__)


def stop(proc: Process, grace: float = 5.0) -> None:
    """Let a child end by itself, then close its lifeline, then force it."""
    if isinstance(proc, LocalProcess):
        proc.stop(grace)
        proc.close_stdin()
        return
    if proc.wait(grace) is None:
        proc.close_stdin()
        if proc.wait(5.0) is None:
            log.warning("process on %s did not stop; cutting it off", proc.host)
            proc.kill()
            proc.wait(5.0)


def stop_all(clients: list[Process], server: Process | None) -> None:
    """Stop every client at once and wait for them all, then the server."""
    stoppers = [threading.Thread(target=stop, args=(proc,)) for proc in clients]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()
    if server is not None:
        server.close_stdin()
        stop(server)


def keep_run_record(sched: Any, run_id: str, app_path: Path | None, args: list[str], report: str) -> None:
    """Keep the ended run's record (for pypsmanage report) and write it to ``report`` (PSREPORT) if set.

    ``sched`` is a proxy of the run's scheduler, which has the record.
    """
    try:
        record = sched.record()
    except Pyro5.errors.CommunicationError as err:
        log.warning("could not fetch the run's record for its report: %s", err)
        return
    record["app"] = "" if app_path is None else str(app_path)
    record["args"] = args
    try:
        save_record(run_id, record)
    except OSError as err:
        log.warning("could not keep the run's record: %s", err)
    if report:
        from pastset.report import write_report  # plotting loads only when a report is asked for

        try:
            write_report(record, Path(report).expanduser())
            log.info("run report written to %s", report)
        except (OSError, PastSetError) as err:
            log.warning("PSREPORT=%s: the report was not written: %s", report, err)
