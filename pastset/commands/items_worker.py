"""The task pypsitems spawns on every client: take an item, process it, deliver the result.

Spawned as ``module:pastset.commands.items_worker``.  The plan (command or function)
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
from pastset.items.plan import JOBS, RESULTS
from pastset.items.stager import STAGE, reply_template
from pastset.psbin import find_in_path
from pastset.settings import Settings

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


def _ask(pset: pastset.PastSet, stage: Any, index: int, host: str, kind: str, path: str, keep: str) -> str:
    """Ask the stager on the master to copy, and wait for its answer."""
    reply = pset.enter(reply_template(index, host))
    stage.move(("stage", index, host, kind, path, keep))
    (answer,) = reply.observe()
    if answer.startswith("!"):
        raise OSError(f"copying item {index} ({kind}) failed on the master: {answer[1:]}")
    return answer


def main() -> int:
    """Process items until the master says there are no more."""
    pset = pastset.PastSet()
    plan = json.loads(pset.enter(("pypsitems.plan", str)).observe(0)[0])
    ranges = {i["index"]: (i["start"], i["end"]) for i in plan["items"]}
    jobs = pset.enter(JOBS, leases=True)
    results = pset.enter(RESULTS)
    function = _function(plan["function"]) if plan["function"] else None
    host, task = socket.gethostname(), Settings.load(run_helper=False).PSTASK
    copy = not plan["shared"] and host != plan["master"]
    stage = pset.enter(STAGE) if copy else None
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
            cwd = None
            try:
                if stage is not None:  # copy mode: the file comes over SFTP into a work directory here
                    value = _ask(pset, stage, index, host, "put", value, "")
                    cwd = os.path.dirname(value)
                command = _command(plan, value, start, end)
                done = subprocess.run(
                    command, shell=plan["shell"], capture_output=True, text=True, errors="replace", cwd=cwd
                )
                status, out, err = done.returncode, done.stdout, done.stderr
                if stage is not None and cwd is not None:  # results go back, the work directory goes
                    _ask(pset, stage, index, host, "get", cwd, os.path.basename(value))
            except OSError as error:
                status, out, err = 127, "", f"item {value!r}: {error.strerror or error}"
        seconds = round(time.monotonic() - began, 4)
        jobs.ack(results, (index, status, out[-LIMIT:], err[-LIMIT:], host, seconds, task))


if __name__ == "__main__":
    sys.exit(main())
