"""A whole run on this machine from plain Python: ``with pastset.local(procs=2) as pset:``.

:func:`local` does what ``pypsrun`` does on one host — the server side with its
scheduler, PSPROCS clients — but the application is the calling program
itself, so a notebook cell, a test or a short script gets a tuple space for the
length of a ``with`` block.  The run is an ordinary run: it is recorded for
``pypsmanage``, spawned tasks go to its clients, halt and timeouts behave as
under pypsrun, and a report is written at its end if PSREPORT asks for one.

Inside the block ``pastset.PastSet()`` without arguments joins this run too
(PSNS, PSRUN and PSSECRET are set in ``os.environ`` for the block and restored
after it), so code written for pypsrun runs unchanged.  Leaving the block,
normally or by an exception, ends the run — quietly, after running tasks are
done, when the block succeeded; at once otherwise — and stops every process it
started.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pastset.client import PastSet
from pastset.errors import ConfigurationError
from pastset.launch.run import Run
from pastset.runs import forget_run, record_run
from pastset.settings import SPEC, Settings, adopt_environment
from pastset.transport import tls

__all__ = ["local"]

log = logging.getLogger(__name__)

#: settings a local run decides itself: they are the run's own wiring
OWN = ("PSHOSTS", "PSMASTER", "PSNS", "PSRUN", "PSSECRET", "PSTASK")


def _settings(procs: int, psbin: str | os.PathLike[str] | list[Any] | None, given: Mapping[str, Any]) -> Settings:
    """The environment's settings with the caller's on top; a bad value is an error naming it."""
    if isinstance(procs, bool) or not isinstance(procs, int) or procs < 0:
        raise ConfigurationError(f"local(procs=...) must be a whole number of clients (0 or more), got {procs!r}")
    wanted: dict[str, Any] = {"PSPROCS": procs}
    if psbin is not None:
        dirs = [psbin] if isinstance(psbin, (str, os.PathLike)) else list(psbin)
        wanted["PSBIN"] = os.pathsep.join(str(Path(d).expanduser().resolve()) for d in dirs)
    for key, value in given.items():
        name = key.upper() if key.upper().startswith("PS") else f"PS{key.upper()}"
        if name not in SPEC or name in OWN:
            allowed = ", ".join(k for k in SPEC if k not in OWN)
            raise ConfigurationError(f"local() has no setting {key!r}; settings it takes: {allowed}")
        wanted[name] = value
    environ = dict(os.environ)
    for name, value in wanted.items():
        parse, _default, _meaning = SPEC[name]
        text = "yes" if value is True else "no" if value is False else "" if value is None else str(value)
        try:
            parse(text)
        except ValueError as err:
            raise ConfigurationError(f"local({name}={value!r}): {err}") from None
        environ[name] = text
    for name in OWN:  # a local run: everything on this machine, a run of its own
        environ.pop(name, None)
    return Settings.load(environ)


@contextmanager
def local(
    procs: int = 1, psbin: str | os.PathLike[str] | list[Any] | None = None, **settings: Any
) -> Iterator[PastSet]:
    """Start a run on this machine and yield a :class:`~pastset.PastSet` joined to it.

    ``procs`` clients are started (PSPROCS); ``psbin`` is the directory, or list of
    directories, where spawned applications are looked up (default: PSBIN, the
    current directory).  Any other setting is given by name, with or without
    its ``PS`` prefix: ``local(procs=2, web=0, deadtime=10)``.  Settings not
    given come from the environment and configuration files, as for pypsrun.
    """
    chosen = _settings(procs, psbin, settings)
    tls.check_client()
    run = Run(chosen, None, [])
    info: dict[str, Any] = {"pid": os.getpid(), "app": "(pastset.local)", "args": [], "hosts": [], "ssh": ""}
    info["secret"] = run.wiring.secret
    saved = {k: os.environ.get(k) for k in ("PSNS", "PSRUN", "PSSECRET", "PSTASK")}
    pset: PastSet | None = None
    quietly = False
    try:
        record_run(run.run_id, info)
        info["ns"] = run.start()
        record_run(run.run_id, info)
        wiring = run.wiring
        os.environ.pop("PSTASK", None)  # this program is the new run's application, not a task of another
        adopt_environment({"PSNS": wiring.ns, "PSRUN": wiring.run, "PSSECRET": wiring.secret})
        pset = PastSet(wiring.run, wiring.ns, wiring.secret)
        log.info("local run %s: %d client(s), name server %s", run.run_id, len(run.placement), wiring.ns)
        yield pset
        quietly = True
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            if pset is not None:
                pset.close()
            run.finish(quietly=quietly)
        finally:
            run.shutdown()
            forget_run(run.run_id)
