"""Hosts files and where each client of a run goes.

A hosts file names one host a line; ``#`` starts a comment and blank lines are
skipped.  A line may also give a slot count in the forms other tools use:
``host slots=N`` (OpenMPI), ``N/host`` (GNU parallel) or ``host:N``.  When
PSPROCS is not set, the run starts as many clients as there are slots; when it
is, clients go to the hosts in file order (a host with N slots taking N in a
row), wrapping around with a warning when there are more clients than slots.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pastset.errors import ConfigurationError

__all__ = ["HostEntry", "assign_clients", "parse_hosts", "read_hosts_file"]

log = logging.getLogger(__name__)

_NAME = r"[A-Za-z0-9_.\-\[\]:%]+?"
_FORMS = (
    re.compile(rf"^(?P<host>{_NAME})\s+slots\s*=\s*(?P<n>\d+)(?:\s+max[-_]slots\s*=\s*\d+)?$"),
    re.compile(rf"^(?P<n>\d+)/(?P<host>{_NAME})$"),
    re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+):(?P<n>\d+)$"),
    re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+)$"),
)


@dataclass(frozen=True)
class HostEntry:
    """One line of a hosts file: a host and, if given, its number of slots."""

    name: str
    slots: int | None = None


def parse_hosts(text: str, source: str = "hosts file") -> list[HostEntry]:
    """Parse hosts-file text; a malformed line raises ConfigurationError naming it."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        for form in _FORMS:
            match = form.match(line)
            if match:
                host = match.group("host").strip("[]")
                slots = match.groupdict().get("n")
                if slots is not None and int(slots) < 1:
                    raise ConfigurationError(f"{source}:{number}: a host needs at least one slot, got {raw.strip()!r}")
                entries.append(HostEntry(host, int(slots) if slots is not None else None))
                break
        else:
            raise ConfigurationError(
                f"{source}:{number}: cannot read {raw.strip()!r}; write one host a line, optionally as "
                "'host slots=N', 'N/host' or 'host:N'"
            )
    return entries


def read_hosts_file(path: str) -> list[HostEntry]:
    """Read and parse the hosts file at ``path`` (errors name the file)."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as err:
        raise ConfigurationError(f"hosts file {path!r} (PSHOSTS) cannot be read: {err.strerror}") from None
    entries = parse_hosts(text, str(path))
    if not entries:
        raise ConfigurationError(f"hosts file {path} names no host; add one host a line or unset PSHOSTS")
    return entries


def assign_clients(entries: list[HostEntry], procs: int | None) -> list[str]:
    """The host of each client, in order.

    ``procs`` None means PSPROCS was not set: one client per slot (a host line
    without a slot count counts once).
    """
    slots = [e.name for e in entries for _ in range(e.slots or 1)]
    if procs is None:
        return slots
    if procs > len(slots):
        log.warning("more client processes (%d) than host slots (%d): wrapping around", procs, len(slots))
    return [slots[i % len(slots)] for i in range(procs)]
