"""The journal: an append-only record of every change to a space, for recovery.

With PSJOURNAL naming a directory, the server appends one record per change —
an element entered or deleted, a tuple moved (or handed back), an unindexed
observe (``first`` advancing), ``delta`` set, ``axe``, an X-function's
``set_entry`` — while it holds the element's lock, so the journal's order is
the element's order.  A record is written with ``write(2)`` before the
operation's reply is sent: every acknowledged change survives the server being
killed (SIGKILL) and is replayed when a server for the same run starts again.
With PSJOURNALSYNC=yes each record is also ``fsync``-ed, so acknowledged
changes survive a power loss too, at a much higher cost per operation.

Records are length-prefixed :mod:`pastset.wire` messages; a record cut short by
a crash is ignored on replay (its operation was never acknowledged).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pastset import wire

__all__ = ["Journal", "journal_path", "read_journal"]

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("<I")


def journal_path(directory: str, run: str) -> Path:
    """Where the journal of ``run`` lives in ``directory``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run)
    return Path(directory).expanduser() / f"{safe}.journal"


class Journal:
    """Appends records to one journal file; safe to use from many threads."""

    def __init__(self, path: Path, sync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.sync = sync
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        self.records = 0

    def write(self, record: tuple[Any, ...]) -> None:
        """Append ``record`` (durable against process death when this returns)."""
        data = wire.encode(record)
        frame = _LENGTH.pack(len(data)) + data
        with self._lock:
            os.write(self._fd, frame)
            if self.sync:
                os.fsync(self._fd)
            self.records += 1

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def read_journal(path: Path) -> Iterator[tuple[Any, ...]]:
    """The records of a journal, in order; a torn last record is skipped."""
    data = path.read_bytes()
    offset = 0
    while offset + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if start + length > len(data):
            log.warning("journal %s ends with a torn record (%d bytes); ignored", path, len(data) - offset)
            return
        yield wire.decode(data[start : start + length])
        offset = start + length
