"""The run report: one self-contained HTML file that shows what ran where, and when.

Written at the end of a run when PSREPORT names a file, and by
``pypsmanage report RUN -o FILE`` from a run's kept record
(:func:`pastset.runs.save_record`).  It holds

- a timeline of the tasks per client (a Gantt chart), failed tasks marked;
- each element's moves (``last``), unindexed observes (``first``) and
  unobserved tuples (``last - first``) over time, sampled once a second;
- busy against idle time per client and per host: the load balance;
- the summary: tasks, failures, wall time, and the speed-up, i.e. the sum of the
  clients' busy time over the time the tasks took, which is what one client
  alone would have needed over what the run needed;
- a table of the tasks with the changes each one's requests made to each
  element (for a bag of tasks: how many bags each worker took; a move that
  completes a waiting observe counts for both).

The charts are drawn with matplotlib's SVG backend and put inline: the file
needs nothing from the network, so it opens on an offline cluster, and text
stays text (searchable, and readable by tests).  matplotlib is the long-kept
standard for static scientific charts, draws without a display, and writes SVG
without any JavaScript; the libraries that draw in the browser (Plotly, Bokeh)
would have to inline megabytes of script.  It is imported here only, when a
report is written, never when a run starts.
"""

from __future__ import annotations

import html
import io
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pastset.errors import ConfigurationError

__all__ = ["busy_time", "render_report", "summary", "timeline_svg", "write_report"]

COLOURS = {
    "done": "#2e8b57",
    "ended with the run": "#5b9bd5",
    "failed": "#c0392b",
    "stopped": "#8a939e",
    "running": "#d18f00",
    "queued": "#c8ced6",
}
MAX_ELEMENT_CHARTS = 8


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigurationError(
            "the run report needs matplotlib: pip install matplotlib (or pastset[report])"
        ) from None
    matplotlib.rcParams["svg.fonttype"] = "none"  # keep text as text
    matplotlib.rcParams["svg.hashsalt"] = "pastset"  # the same run gives the same file
    from matplotlib.figure import Figure

    return Figure


def _svg(fig: Any) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight")
    text = out.getvalue()
    return text[text.index("<svg") :]


def _span(record: dict[str, Any]) -> tuple[float, float]:
    """The run's start and end (or the latest moment it knows of)."""
    start = float(record.get("started") or time.time())
    times = [t.get("ended") or t.get("started") or 0 for t in record["tasks"]]
    times += [s["t"] for s in record.get("samples", [])]
    if record.get("ended_at"):
        return start, float(record["ended_at"])
    end = max([start, *[t for t in times if t]]) if record.get("ended") else time.time()
    return start, float(end)


def _tasks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks; those still running when the run ended are shown as ended with it."""
    ended = record.get("ended_at")
    out = []
    for task in record["tasks"]:
        if ended and task["state"] == "running":
            task = {**task, "state": "ended with the run", "ended": ended}
        out.append(task)
    return out


def _template(text: str) -> str:
    return re.sub(r"<class '([\w.]+)'>", r"\1", text)


def _ops(record: dict[str, Any], who: str) -> list[str]:
    """What task ``who`` ("" the application) did to each element: "18 on ('pi-jobs', int)"."""
    templates = record.get("templates", {})
    return [
        f"{counts[who]} on {_template(templates.get(eid, 'element ' + eid))}"
        for eid, counts in sorted(record.get("tally", {}).items(), key=lambda kv: int(kv[0]))
        if counts.get(who)
    ]


def _clients(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": c["id"], "host": str(c.get("specs", {}).get("host", "?")), **c} for c in record["clients"]]


def busy_time(record: dict[str, Any]) -> dict[str, float]:
    """Seconds each client spent running tasks."""
    _, end = _span(record)
    busy: dict[str, float] = defaultdict(float)
    for task in _tasks(record):
        if task.get("started") and task.get("client"):
            busy[task["client"]] += (task.get("ended") or end) - task["started"]
    return dict(busy)


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The figures at the top of the report."""
    start, end = _span(record)
    tasks = _tasks(record)
    busy = busy_time(record)
    ran = [t for t in tasks if t.get("started")]
    first = min((t["started"] for t in ran), default=start)
    last = max(((t.get("ended") or end) for t in ran), default=start)
    span = max(last - first, 1e-9)
    total = sum(busy.values())
    return {
        "run": record.get("run", ""),
        "application": " ".join([str(record.get("app", "")), *map(str, record.get("args", []))]).strip(),
        "tasks": len(tasks),
        "done": sum(1 for t in tasks if t["state"] == "done"),
        "failed": sum(1 for t in tasks if t["state"] == "failed"),
        "clients": len(record["clients"]),
        "hosts": len({c["host"] for c in _clients(record)}),
        "wall time (s)": round(end - start, 2),
        "tasks' time (s)": round(last - first, 2) if ran else 0.0,
        "busy time, all clients (s)": round(total, 2),
        "speed-up over one client": round(total / span, 2) if ran else 0.0,
        "moves": record.get("moves", 0),
        "observes": record.get("observes", 0),
    }


def _task_label(task: dict[str, Any]) -> str:
    return f"{task['id']} {Path(task['app']).name}" + (f" {' '.join(task['args'])}" if task.get("args") else "")


def timeline_svg(record: dict[str, Any]) -> str:
    """The Gantt chart of the tasks per client, as an SVG document (failed tasks red and hatched)."""
    figure = _plt()
    start, end = _span(record)
    clients = _clients(record)
    rows = {c["id"]: i for i, c in enumerate(clients)}
    fig = figure(figsize=(10, 0.9 + 0.55 * max(1, len(clients))), layout="constrained")
    ax = fig.subplots()
    tasks = _tasks(record)
    for task in tasks:
        if not task.get("started") or task.get("client") not in rows:
            continue
        left = task["started"] - start
        width = max((task.get("ended") or end) - task["started"], (end - start) / 500)
        state = task["state"]
        (bar,) = ax.barh(
            rows[task["client"]],
            width,
            left=left,
            height=0.6,
            color=COLOURS.get(state, "#888"),
            edgecolor="#1c232b",
            linewidth=0.6,
            hatch="xx" if state == "failed" else None,
        )
        bar.set_gid(f"task-{task['id']}")
        label = ": ".join([_task_label(task) + (" FAILED" if state == "failed" else ""), *_ops(record, task["id"])[:2]])
        ax.text(left + width / 2, rows[task["client"]], label, ha="center", va="center", fontsize=7, clip_on=True)
    ax.set_yticks(range(len(clients)), [f"{c['id']} on {c['host']}" for c in clients])
    ax.set_ylim(len(clients) - 0.4, -0.6)
    ax.set_xlim(0, max(end - start, 1e-3))
    ax.set_xlabel("seconds since the run started")
    ax.set_title("Tasks per client")
    ax.grid(axis="x", color="#dde1e6")
    handles = [
        _patch(COLOURS[s], s, hatch="xx" if s == "failed" else None)
        for s in COLOURS
        if any(t["state"] == s for t in tasks)
    ]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _svg(fig)


def _patch(colour: str, label: str, hatch: str | None = None) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor="#1c232b", hatch=hatch, label=label)


def elements_svg(record: dict[str, Any]) -> str:
    """Moves, observes and unobserved tuples of each element over time (SVG)."""
    figure = _plt()
    start, _ = _span(record)
    samples = record.get("samples", [])
    templates = record.get("templates", {})
    eids = sorted({e for s in samples for e in s["elements"]}, key=int)[:MAX_ELEMENT_CHARTS]
    fig = figure(figsize=(10, 0.6 + 2.0 * max(1, len(eids))), layout="constrained")
    axes = fig.subplots(max(1, len(eids)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, eid in zip(axes, eids, strict=False):
        points = [(s["t"] - start, *s["elements"][eid]) for s in samples if eid in s["elements"]]
        t = [p[0] for p in points]
        first = [p[1] for p in points]
        last = [p[2] for p in points]
        ax.plot(t, last, color="#2563eb", marker=".", label="moves (last)", gid=f"moves-{eid}")
        ax.plot(t, first, color="#2e8b57", marker=".", label="observes (first)", gid=f"observes-{eid}")
        ax.plot(
            t, [b - a for a, b in zip(first, last, strict=True)], color="#d18f00", label="unobserved (last - first)"
        )
        ax.set_title(f"element {eid} {_template(templates.get(eid, ''))}", fontsize=9, loc="left")
        ax.grid(color="#eef1f5")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    if not eids:
        axes[0].text(0.5, 0.5, "no element was sampled (the run was shorter than a second)", ha="center")
    axes[-1].set_xlabel("seconds since the run started")
    return _svg(fig)


def balance_svg(record: dict[str, Any]) -> str:
    """Busy against idle time per client and per host (SVG)."""
    figure = _plt()
    start, end = _span(record)
    busy = busy_time(record)
    clients = _clients(record)
    per_client = []
    hosts: dict[str, list[float]] = {}
    for c in clients:
        alive = max(end - max(float(c.get("registered_at") or start), start), 1e-9)
        b = min(busy.get(c["id"], 0.0), alive)
        per_client.append((f"{c['id']} on {c['host']}", b, alive - b))
        totals = hosts.setdefault(c["host"], [0.0, 0.0])
        totals[0] += b
        totals[1] += alive - b
    fig = figure(figsize=(10, 1.8 + 0.45 * (len(per_client) + len(hosts))), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[max(1, len(per_client)), max(1, len(hosts))])
    for ax, rows, title in (
        (top, per_client, "Busy and idle time per client"),
        (bottom, [(h, b, i) for h, (b, i) in hosts.items()], "per host"),
    ):
        names = [r[0] for r in rows]
        ax.barh(names, [r[1] for r in rows], color="#2e8b57", label="busy", gid="busy")
        ax.barh(names, [r[2] for r in rows], left=[r[1] for r in rows], color="#c8ced6", label="idle", gid="idle")
        for i, (_, b, idle) in enumerate(rows):
            share = 100 * b / max(b + idle, 1e-9)
            ax.text(b + idle, i, f" {share:.0f} % busy", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("seconds")
        ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1), fontsize=8, frameon=False)
    return _svg(fig)


def _table(rows: list[dict[str, Any]], columns: list[str], row_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cls = f' class="{html.escape(str(r.get(row_class, "")).replace(" ", "-"))}"' if row_class else ""
        cells = "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _task_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    start, _ = _span(record)
    rows = []
    for task in _tasks(record):
        rows.append(
            {
                "task": task["id"],
                "application": _task_label(task).partition(" ")[2],
                "client": task.get("client", ""),
                "host": task.get("host", ""),
                "state": task["state"],
                "status": "" if task.get("status") is None else task["status"],
                "start (s)": "" if not task.get("started") else f"{task['started'] - start:.2f}",
                "end (s)": "" if not task.get("ended") else f"{task['ended'] - start:.2f}",
                "operations on elements": "; ".join(_ops(record, task["id"])),
            }
        )
    return rows


def render_report(record: dict[str, Any]) -> str:
    """The whole report as one HTML document."""
    facts = summary(record)
    title = f"PastSet run {facts['run']}"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("started") or 0)))
    app_ops = _ops(record, "")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class=note>started {when}</p>",
        '<section id="summary"><h2>Summary</h2>',
        "<dl>"
        + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())
        + "</dl>",
        "<p class=note>Speed-up: the clients' busy time added up (what one client alone would need) "
        "over the time from the first task's start to the last one's end.</p></section>",
        f'<section id="timeline"><h2>Where and when each task ran</h2>{timeline_svg(record)}</section>',
        f'<section id="balance"><h2>Load balance</h2>{balance_svg(record)}</section>',
        f'<section id="elements"><h2>Elements over time</h2>{elements_svg(record)}'
        "<p class=note>Sampled once a second by the scheduler.</p></section>",
        '<section id="tasks"><h2>Tasks</h2>',
        _table(
            _task_rows(record),
            [
                "task",
                "application",
                "client",
                "host",
                "state",
                "status",
                "start (s)",
                "end (s)",
                "operations on elements",
            ],
            "state",
        ),
        "<p class=note>Operations on elements: the changes each task's requests made to each element; "
        "in a bag of tasks, how many bags each worker took. A request that completes a waiting one "
        "(a move handing its tuple to a blocked observe) counts for both."
        + (f" The application itself made {html.escape('; '.join(app_ops))}." if app_ops else "")
        + "</p></section>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(record: dict[str, Any], path: Path) -> Path:
    """Write the report of ``record`` to ``path`` (created or replaced) and return the path."""
    text = render_report(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


STYLE = """
body{margin:0 auto;max-width:1100px;padding:0 24px 40px;font:14px/1.45 system-ui,sans-serif;color:#1c232b}
h1{font-size:20px;margin:20px 0 0}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #dde1e6}
.note{color:#6b7480;font-size:12px}dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}
dt{color:#6b7480}dd{margin:0;font-variant-numeric:tabular-nums}svg{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 8px;border-bottom:1px solid #dde1e6;text-align:left}
th{background:#eef1f5}tr.failed td{background:#fdecea}
"""
