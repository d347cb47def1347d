"""``pypsmanage``: look at a live run — clients, tasks, elements, status, runs."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import Pyro5.api
import Pyro5.errors

from ..errors import PastSetError
from ..naming import scheduler_name
from ..runs import list_runs, pick_run
from ..settings import Settings, configure_logging
from . import parser_for

__all__ = ["main", "table"]

VIEWS = {
    "clients": "clients",
    "hosts": "clients",
    "mstat": "clients",
    "tasks": "tasks",
    "processes": "tasks",
    "pstat": "tasks",
    "elements": "elements",
    "status": "status",
    "runs": "runs",
}

COLUMNS = {
    "clients": ["id", "host", "system", "arch", "cores", "memory", "disk", "speed", "alive", "running", "done"],
    "tasks": ["id", "app", "args", "spawned_at", "host", "state", "status", "started", "ended"],
    "elements": ["id", "template", "first", "last", "delta", "stored", "xfunction"],
    "runs": ["run", "alive", "pid", "ns", "app", "started"],
}


def _cell(value: Any) -> str:
    if isinstance(value, float) and value > 1e9:  # a timestamp
        return time.strftime("%H:%M:%S", time.localtime(value))
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an aligned text table with a header."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _flatten_clients(clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**c["specs"], **{k: v for k, v in c.items() if k != "specs"}} for c in clients]


def main(argv: list[str] | None = None) -> int:
    """Show one view of a live run."""
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings.load(run_helper=False)
    parser = parser_for("pypsmanage", "Show the clients, tasks and elements of a live run.", settings)
    parser.add_argument("view", choices=sorted(VIEWS), help="what to show")
    parser.add_argument("filter", nargs="?", default="", help="only rows containing this text")
    parser.add_argument("--run", default=None, help="the run (default: the only live one)")
    parser.add_argument("--ns", default=None, help="name server HOST:PORT of the run (default: from the run file)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    options = parser.parse_args(argv)
    configure_logging(settings, "pypsmanage")
    view = VIEWS[options.view]
    try:
        if view == "runs":
            rows = list_runs()
        else:
            rows = _fetch(view, options, settings)
    except PastSetError as err:
        sys.stderr.write(f"pypsmanage: {err}\n")
        return 1
    if isinstance(rows, list) and options.filter:
        rows = [r for r in rows if options.filter in json.dumps(r, default=str)]
    if options.json:
        print(json.dumps(rows, default=str, indent=1))
    elif isinstance(rows, dict):
        print("\n".join(f"{k:<16} {_cell(v)}" for k, v in rows.items()))
    else:
        print(table(rows, COLUMNS[view]))
    return 0


def _fetch(view: str, options: Any, settings: Settings) -> Any:
    if options.ns:
        address, run = options.ns, options.run or settings.PSRUN
    else:
        chosen = pick_run(options.run)
        address, run = chosen.get("ns", ""), chosen["run"]
        if not options.run:
            sys.stderr.write(f"pypsmanage: run {run}\n")
    host, _, port = address.rpartition(":")
    try:
        with Pyro5.api.Proxy(f"PYRO:{Pyro5.core.NAMESERVER_NAME}@{host}:{port}") as ns:
            ns._pyroTimeout = 10
            uri = ns.lookup(scheduler_name(run))
        with Pyro5.api.Proxy(uri) as sched:
            sched._pyroSerializer = "msgpack"
            sched._pyroTimeout = 10
            snap = sched.snapshot()
    except (Pyro5.errors.CommunicationError, Pyro5.errors.NamingError) as err:
        from ..errors import PastSetConnectionError

        raise PastSetConnectionError(f"cannot reach run {run!r} at {address}: {err}") from None
    if view == "clients":
        return _flatten_clients(snap["clients"])
    if view == "tasks":
        return snap["tasks"]
    if view == "elements":
        return snap["elements"]
    tasks = snap["tasks"]
    return {
        "run": run,
        "clients alive": sum(1 for c in snap["clients"] if c["alive"]),
        "tasks queued": sum(1 for t in tasks if t["state"] == "queued"),
        "tasks running": sum(1 for t in tasks if t["state"] == "running"),
        "tasks done": sum(1 for t in tasks if t["state"] == "done"),
        "tasks failed": sum(1 for t in tasks if t["state"] == "failed"),
        "elements": len(snap["elements"]),
        "halted": snap["halted"],
    }


if __name__ == "__main__":
    sys.exit(main())
