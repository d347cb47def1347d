"""The task pypsitems spawns on every client: take an item, process it, deliver the result.

Spawned as ``module:pastset.items_worker``.  The plan (command or function)
comes through the tuple space, so a worker on another host needs nothing from
the master's file system; the result and the acknowledgement of the item travel
in one request, so every item's result arrives exactly once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

import pastset

from .items import JOBS, RESULTS
from .settings import Settings
from .space import find_in_path

LIMIT = 64 * 1024


def _function(spec: str) -> Any:
    module_name, _, name = spec.partition(":")
    path = find_in_path(module_name, Settings.load(run_helper=False).psbin, ".py")
    if path is None:
        raise pastset.AppNotFoundError(f"--function {spec}: no {module_name}.py in PSBIN")
    loaded = importlib.util.spec_from_file_location(f"pypsitems_{module_name}", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return getattr(module, name)


def _command(plan: dict[str, Any], value: str, start: int | None, end: int | None) -> list[str] | str:
    fields = {"start": "" if start is None else str(start), "end": "" if end is None else str(end)}
    if plan["shell"]:
        text = " ".join(plan["command"])
        quoted = shlex.quote(value)
        return text.replace("{}", quoted).format(**fields) if "{}" in text else f"{text} {quoted}"
    args = [
        a.replace("{}", value).replace("{start}", fields["start"]).replace("{end}", fields["end"])
        for a in plan["command"]
    ]
    if not any("{}" in a or "{start}" in a for a in plan["command"]):
        args.append(value)
    return args


def main() -> int:
    """Process items until the master says there are no more."""
    pset = pastset.PastSet()
    plan = json.loads(pset.enter(("pypsitems.plan", str)).observe(0)[0])
    ranges = {i["index"]: (i["start"], i["end"]) for i in plan["items"]}
    jobs = pset.enter(JOBS, leases=True)
    results = pset.enter(RESULTS)
    function = _function(plan["function"]) if plan["function"] else None
    host, task = socket.gethostname(), os.environ.get("PSTASK", "")
    while True:
        index, value = jobs.observe()
        if index < 0:
            jobs.ack()
            return 0
        began = time.monotonic()
        if function is not None:
            try:
                status, out, err = 0, str(function(value)), ""
            except Exception:
                status, out, err = 1, "", traceback.format_exc()
        else:
            start, end = ranges.get(index, (None, None))
            command = _command(plan, value, start, end)
            try:
                done = subprocess.run(command, shell=plan["shell"], capture_output=True, text=True, errors="replace")
                status, out, err = done.returncode, done.stdout, done.stderr
            except OSError as error:
                status, out, err = 127, "", f"cannot run {command!r}: {error.strerror}"
        seconds = round(time.monotonic() - began, 4)
        jobs.ack(results, (index, status, out[-LIMIT:], err[-LIMIT:], host, seconds, task))


if __name__ == "__main__":
    sys.exit(main())
