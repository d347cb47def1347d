"""``pypsmanage``: see and steer a live run from any host that can reach it.

Views: ``clients``/``hosts``/``mstat`` (specs), ``tasks``/``processes``/``pstat``
(spawned tasks), ``elements``, ``waiting`` (every blocked operation: who, where,
which element, for how long), ``status``, ``runs``; an optional filter keeps only
rows containing its text.  Control: ``pause`` / ``resume`` (optionally one
element), ``stop``.  ``top`` redraws a live overview until the run ends.
``report RUN -o FILE`` writes the HTML report of a run (ended and recorded, or live).
Aligned tables for people, ``--json`` for scripts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import Pyro5.errors

from pastset.commands import parser_for
from pastset.core.naming import scheduler_name
from pastset.errors import PastSetConnectionError, PastSetError
from pastset.items.plan import tally
from pastset.runs import list_runs, load_record, pick_run
from pastset.server.overview import clients_of, elements_of, status_of, tasks_of, waiting_of
from pastset.settings import SECRETS, Settings, configure_logging
from pastset.transport.proxies import connection_error, lookup, proxy

__all__ = ["main", "table"]

VIEWS = {
    "clients": "clients",
    "hosts": "clients",
    "mstat": "clients",
    "tasks": "tasks",
    "processes": "tasks",
    "pstat": "tasks",
    "elements": "elements",
    "waiting": "waiting",
    "status": "status",
    "runs": "runs",
}
ACTIONS = ("pause", "resume", "stop", "top", "logs", "report")

COLUMNS = {
    "clients": ["id", "host", "system", "arch", "cores", "memory", "disk", "speed", "alive", "running", "done"],
    "tasks": ["id", "app", "args", "spawned_at", "host", "state", "status", "started", "ended", "waiting"],
    "elements": ["id", "template", "first", "last", "delta", "stored", "xfunction", "waiting"],
    "waiting": ["task", "app", "host", "pid", "op", "template", "element", "waited_s", "timeout"],
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


def main(argv: list[str] | None = None) -> int:
    """Show one view of a live run, or steer it."""
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings.load(run_helper=False)
    parser = parser_for("pypsmanage", (__doc__ or "").split("\n\n")[1], settings)
    parser.add_argument("view", choices=sorted([*VIEWS, *ACTIONS]), help="what to show or do")
    parser.add_argument(
        "filter",
        nargs="?",
        default="",
        help="only rows containing this text; for pause/resume: only the elements whose id or template contains it",
    )
    parser.add_argument("--run", default=None, help="the run (default: the only live one)")
    parser.add_argument("--ns", default=None, help="name server HOST:PORT of the run (default: from the run file)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--results", default="", help="logs: the experiments' base directory (default: user data dir)")
    parser.add_argument("-o", "--output", default="", help="report: the HTML file to write (default RUN.html)")
    parser.add_argument("--interval", type=float, default=1.0, help="top: seconds between redraws")
    parser.add_argument(
        "--iterations", type=int, default=0, help="top: stop after this many redraws (0: until the run ends)"
    )
    options = parser.parse_args(argv)
    configure_logging(settings, "pypsmanage")
    try:
        if options.view == "logs":
            return _logs(options)
        if options.view == "report":
            return _report(options, settings)
        if options.view == "runs":
            rows: Any = [{k: v for k, v in r.items() if k != "secret"} for r in list_runs()]
            return _show(rows, "runs", options)
        run, sched = _connect(options, settings)
        with sched:
            if options.view == "top":
                return _top(sched, options)
            if options.view in ("pause", "resume", "stop"):
                return _control(sched, run, options)
            snap = sched.snapshot()
    except PastSetError as err:
        sys.stderr.write(f"pypsmanage: {err}\n")
        return 1
    except Pyro5.errors.CommunicationError as err:
        sys.stderr.write(f"pypsmanage: lost the run: {err}\n")
        return 1
    view = VIEWS[options.view]
    rows = {
        "clients": clients_of,
        "tasks": tasks_of,
        "elements": elements_of,
        "waiting": waiting_of,
        "status": status_of,
    }[view](snap)
    return _show(rows, view, options)


def _show(rows: Any, view: str, options: Any) -> int:
    if isinstance(rows, list) and options.filter:
        rows = [r for r in rows if options.filter in json.dumps(r, default=str)]
    if options.json:
        print(json.dumps(rows, default=str, indent=1))
    elif isinstance(rows, dict):
        print("\n".join(f"{k:<16} {_cell(v)}" for k, v in rows.items()))
    else:
        print(table(rows, COLUMNS[view]))
    return 0


def _logs(options: Any) -> int:
    """List experiments, or show one experiment's run log and its session logs."""
    import platformdirs

    base = (
        Path(options.results).expanduser()
        if options.results
        else (Path(platformdirs.user_data_dir("pastset")) / "experiments")
    )
    folders = sorted((p for p in base.glob("*") if (p / "plan.json").exists()), key=lambda p: p.stat().st_mtime)
    if options.filter:
        folders = [p for p in folders if options.filter in p.name]
        if len(folders) == 1:
            folder = folders[0]
            print(f"experiment {folder.name} in {folder}")
            print((folder / "run.log").read_text() if (folder / "run.log").exists() else "(no run log yet)", end="")
            for session in sorted((folder / "sessions").glob("*.log")):
                lines = session.read_text().splitlines()
                print(f"session {session.stem}: {len(lines)} item(s); last: {lines[-1] if lines else '-'}")
            return 0
    rows = [{"experiment": folder.name, **tally(folder), "path": str(folder)} for folder in folders]
    if options.json:
        print(json.dumps(rows, indent=1))
    else:
        print(table(rows, ["experiment", "items", "done", "failed", "left", "path"]))
    return 0


def _report(options: Any, settings: Settings) -> int:
    """Write the HTML report of a recorded run, or of a live one as it stands."""
    from pastset.report import write_report

    name = options.filter or options.run
    if name:
        try:
            record = load_record(name)
        except PastSetError:
            if not any(r["alive"] and r["run"].startswith(name) for r in list_runs()):
                raise
            record = None
    else:
        record = None
    if record is None:  # a live run: its record as it stands now
        options.run = options.run or name or None
        _, sched = _connect(options, settings)
        with sched:
            record = sched.record()
    output = Path(options.output or f"{record['run']}.html").expanduser()
    write_report(record, output)
    print(f"report of run {record['run']} written to {output}")
    return 0


def _connect(options: Any, settings: Settings) -> tuple[str, Any]:
    if options.ns:
        address, run, secret = options.ns, options.run or settings.PSRUN, settings.PSSECRET
    else:
        chosen = pick_run(options.run)
        address, run, secret = chosen.get("ns", ""), chosen["run"], chosen.get("secret", "")
        SECRETS.add(secret)
        if not options.run:
            sys.stderr.write(f"pypsmanage: run {run}\n")
    try:
        uri = lookup(address, scheduler_name(run), secret)
    except Pyro5.errors.NamingError:
        raise PastSetConnectionError(f"run {run!r} has no scheduler at {address}") from None
    except Pyro5.errors.CommunicationError as err:
        raise connection_error(address, err) from None
    return run, proxy(uri, secret, timeout=30)


def _control(sched: Any, run: str, options: Any) -> int:
    if options.view == "stop":
        sched.stop(f"the run was stopped by pypsmanage at {time.strftime('%H:%M:%S')}")
        print(f"run {run}: stopped")
        return 0
    touched = getattr(sched, options.view)(options.filter)
    what = f"elements {', '.join(map(str, touched)) or '(none matched)'}" if options.filter else "dispatch and observes"
    print(f"run {run}: {options.view}d {what}")
    return 0


def _top(sched: Any, options: Any) -> int:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table

    def render(snap: dict[str, Any]) -> Group:
        status = status_of(snap)
        parts: list[Any] = ["   ".join(f"[bold]{k}[/] {v}" for k, v in status.items())]
        for title, rows, columns in (
            ("hosts", clients_of(snap), ["id", "host", "cores", "speed", "alive", "running", "done"]),
            ("tasks", snap["tasks"][-15:], ["id", "app", "args", "host", "state", "status"]),
            ("elements", snap["elements"], ["id", "template", "first", "last", "delta", "stored"]),
        ):
            grid = Table(title=title, title_justify="left", expand=False)
            for column in columns:
                grid.add_column(column.upper())
            for row in rows:
                grid.add_row(*(_cell(row.get(c)) for c in columns))
            parts.append(grid)
        return Group(*parts)

    console = Console()
    count = 0
    with Live(render(sched.snapshot()), console=console, auto_refresh=False) as live:
        while True:
            count += 1
            snap = sched.snapshot()
            live.update(render(snap), refresh=True)
            if snap["ended"] or (options.iterations and count >= options.iterations):
                break
            if sched.wait_end(options.interval) is not None:  # paced by the run's own end event
                live.update(render(sched.snapshot()), refresh=True)
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
