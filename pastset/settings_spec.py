"""The table of PS* settings (:data:`SPEC`) and the parsers that check each one.

Every setting of SEMANTICS.md has one row here: the parser that turns its text
into a typed value, its default written as text, and the meaning ``-h`` prints.
A parser raises ValueError saying what is allowed; :meth:`pastset.settings.Settings.load`
turns that into a warning naming the setting, and ``pastset.local()`` into an
error.  The table is apart from the loading so that it reads as one page and
can be used (by ``local()``, by the docs' checks) without loading anything;
nothing here reads files or the environment (:mod:`pastset.settings` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LEVELS", "SPEC"]

LEVELS = ("debug", "info", "warning", "error", "critical")


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value

    return parse


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with the empty text meaning "unset" (None)."""

    def optional(text: str) -> Any:
        return None if not text else parse(text)

    return optional


def _level(text: str) -> str:
    if text.lower() not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)}")
    return text.lower()


def _text(text: str) -> str:
    return text


def _yes_no(text: str) -> bool:
    if text.lower() in ("1", "yes", "true", "on"):
        return True
    if text.lower() in ("", "0", "no", "false", "off"):
        return False
    raise ValueError("must be yes or no")


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(text: str) -> int:
    """A size such as 1073741824, 512M or 1G (binary units; a trailing B or iB is allowed)."""
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    number = value[: len(value) - len(unit)].strip()
    try:
        size = int(float(number) * _UNITS[unit])
    except (ValueError, OverflowError):
        raise ValueError("must be a size in bytes such as 1G, 512M or 1073741824") from None
    if size < 1 << 20:
        raise ValueError("must be at least 1M")
    return size


def _stall(text: str) -> str:
    if text.lower() not in ("stop", "report"):
        raise ValueError("must be stop or report")
    return text.lower()


def _web(text: str) -> str:
    if text:
        if not text.rpartition(":")[2].isdigit():
            raise ValueError("must be PORT or HOST:PORT")
    return text


def _channel(text: str) -> str:
    value = text.strip().lower() or "auto"
    if value in ("auto", "off") or (value.isdigit() and 0 < int(value) < 65536):
        return value
    raise ValueError("must be auto, off or a TCP port number")


def _launch(text: str) -> str:
    value = text.strip().lower() or "auto"
    if value not in ("auto", "ssh", "srun", "pbsdsh", "local"):
        raise ValueError("must be auto, ssh, srun, pbsdsh or local")
    return value


def _store(text: str) -> str:
    text = text.strip()
    if text:
        scheme, sep, _ = text.partition("://")
        if not sep or scheme.lower() not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
            raise ValueError(
                "must be empty (the built-in server), redis://HOST:PORT[/DB], rediss://HOST:PORT, "
                "or redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
    return text


def _ns(text: str) -> str:
    if text:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be HOST:PORT")
    return text


#: name -> (parser, default, meaning); the order is the order -h prints.
SPEC: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "PSBIN": (_text, ".", "where applications and X-functions are looked up (dirs joined by ':')"),
    "PSROOT": (_text, "", "the installation (default: the installed package)"),
    "PSMASTER": (_text, "", "host for the server side (empty: this host)"),
    "PSHOSTS": (_text, "", "hosts file, one host a line (empty: only this host)"),
    "PSPROCS": (_int_at_least(0), "1", "clients to launch, in hosts-file order"),
    "PSLAUNCH": (
        _launch,
        "auto",
        "how clients start: auto (srun in a SLURM job, pbsdsh in a PBS job, else ssh), ssh, srun, pbsdsh or local",
    ),
    "PSSSH": (_text, "ssh", "ssh command used to reach hosts"),
    "PSSSHACCEPT": (_yes_no, "no", "accept unknown SSH host keys (only for throwaway test clusters)"),
    "PSPYTHON": (_text, "python", "python command on the nodes (locally: this Python)"),
    "PSPKILL": (_text, "pkill -9 -f", "kill-by-name command (kept for compatibility; unused)"),
    "PSWAITPROCS": (
        _optional(_int_at_least(0)),
        "",
        "clients to register before the app starts (default PSPROCS)",
    ),
    "PSLOGPATH": (_text, "", "log file (empty: no log file)"),
    "PSLOGLEVEL": (_level, "warning", "debug, info, warning, error or critical"),
    "PSCONFHELP": (_text, "", "configuration helper script run before the environment is read"),
    "PSSLOTS": (_int_at_least(1), "1", "spawned tasks one client runs at once"),
    "PSPROGRESS": (_yes_no, "no", "pypsrun shows a live progress line on a terminal's stderr"),
    "PSWEB": (_web, "", "serve a status page: PORT or HOST:PORT (loopback unless a host is given)"),
    "PSDEADTIME": (_seconds, "6", "seconds without a heartbeat before a client counts as dead"),
    "PSCHANNEL": (
        _channel,
        "auto",
        "element operations' direct channel: auto (a free port), a fixed PORT, or off (all through Pyro5)",
    ),
    "PSMAXINFLIGHT": (
        _bytes,
        "1G",
        "server: bytes of requests and replies held in flight (also the largest request); past it, reading waits",
    ),
    "PSSTALLGRACE": (
        _seconds,
        "2",
        "seconds everything must stay blocked and unchanged before pypsrun reports that the run can never progress",
    ),
    "PSSTALL": (_stall, "stop", "a run that can never progress: stop (report, exit status 3) or report (keep waiting)"),
    "PSFAILFAST": (_yes_no, "no", "the first spawned task that fails ends the run, showing its traceback (MPI_Abort)"),
    "PSSTRICT": (_yes_no, "no", "moves must be tuples of the template's length (a course's strict mode)"),
    "PSJOURNAL": (_text, "", "directory where the server journals every change, to recover after a crash"),
    "PSJOURNALSYNC": (_yes_no, "no", "fsync each journal record (survives power loss; much slower)"),
    "PSREPORT": (_text, "", "write an HTML report of the run (timeline, load balance) to this file when it ends"),
    "PSSTORE": (
        _store,
        "",
        "where elements live: empty (the built-in server), redis://HOST:PORT[/DB], rediss://..., "
        "or redis+cluster://HOST:PORT[,HOST:PORT...] (user and password in the URL; keep it off command lines)",
    ),
    "PSSTOREKEEP": (_yes_no, "no", "keep a run's keys in the Redis store when the run ends"),
    "PSSECRET": (_text, "", "the run's secret (made by pypsrun, handed on privately; never shown)"),
    "PSNS": (_ns, "", "name server of the current run as HOST:PORT (set by pypsrun)"),
    "PSRUN": (_text, "", "name of the current run (set by pypsrun)"),
    "PSTASK": (_text, "", "id of the spawned task this process runs (set by clients)"),
}
