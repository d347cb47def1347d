"""The journal: an append-only record of every change to a space, for recovery.

With PSJOURNAL naming a directory, the server appends one record per change —
an element entered or deleted, a tuple moved (or handed back), an unindexed
observe (``first`` advancing), ``delta`` set, ``axe``, an X-function's
``set_entry``, a lease acknowledged — while it holds the element's lock, so the
journal's order is the element's order.  A record is written with ``write(2)``
before the operation's reply is sent: every acknowledged change survives the
server being killed (SIGKILL) and is replayed when a server for the same run
starts again.  With PSJOURNALSYNC=yes each record is also ``fsync``-ed, so
acknowledged changes survive a power loss too, at a much higher cost per
operation.

A journal cannot lie.  The file starts with :data:`MAGIC`; every record is a
20-byte header — payload length, CRC32C of the payload, a sequence number
counting from 1, and a CRC32C of those 16 bytes — followed by the payload, a
:mod:`pastset.wire` message.  At start:

* a **torn tail** (a header or payload cut short by a crash, or a tail of zero
  bytes a file system left after a power loss) is cut off with a warning naming
  the file and the offset: its operation was never acknowledged;
* **damage** anywhere before the end — a flipped byte, a bad length, a record
  duplicated or missing (the sequence numbers tell), bytes that do not decode —
  stops the start with a :class:`~pastset.errors.JournalError` naming the file
  and the offset.  ``python -m pastset.commands.journal recover FILE`` keeps
  what precedes the damage (the damaged file is kept beside it).

CRC32C (Castagnoli) comes from ``google-crc32c``, which uses the CPU's CRC
instruction; it detects every burst error up to 32 bits and is what iSCSI,
ext4 and LevelDB-style logs use for the same purpose.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pastset import wire
from pastset.errors import JournalError

__all__ = ["MAGIC", "Journal", "Scan", "journal_path", "read_journal", "scan_journal"]

log = logging.getLogger(__name__)

#: the first bytes of every journal file (the format's version is in it)
MAGIC = b"pastset journal 2\n"
_HEADER = struct.Struct("<IIQ")  # payload length, payload CRC32C, sequence number
_CHECK = struct.Struct("<I")  # CRC32C of the 16 bytes above
HEADER_SIZE = _HEADER.size + _CHECK.size
RECOVER = "python -m pastset.commands.journal recover"


def _crc(data: bytes | memoryview) -> int:
    import google_crc32c  # only journaling servers need it

    return int(google_crc32c.value(bytes(data)))


def frame(sequence: int, payload: bytes) -> bytes:
    """One record as written to the file."""
    head = _HEADER.pack(len(payload), _crc(payload), sequence)
    return head + _CHECK.pack(_crc(head)) + payload


def journal_path(directory: str, run: str) -> Path:
    """Where the journal of ``run`` lives in ``directory``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run)
    return Path(directory).expanduser() / f"{safe}.journal"


@dataclass
class Scan:
    """What a journal file holds: its good records, where they end, and what follows them."""

    path: Path
    records: list[tuple[Any, ...]] = field(default_factory=list)
    #: the offset just after the last good record (the file's good length)
    end: int = 0
    #: the last record's sequence number
    sequence: int = 0
    #: why the bytes after ``end`` are a torn tail ('' when the file ends cleanly)
    torn: str = ""
    #: the damage found at ``end`` (only when scanned with ``stop_at_damage``)
    damage: str = ""


def _damage(scan: Scan, offset: int, what: str) -> JournalError:
    return JournalError(
        f"journal {scan.path} is damaged at offset {offset}: {what}. The {len(scan.records)} record(s) before it "
        f"are intact; `{RECOVER} {scan.path}` keeps them (the damaged file is kept beside it), or move the file "
        "away to start empty",
        path=str(scan.path),
        offset=offset,
    )


def scan_journal(path: Path, stop_at_damage: bool = False) -> Scan:
    """Read and check a journal file.

    A torn tail is reported in :attr:`Scan.torn` (the file is not changed).
    Damage raises :class:`~pastset.errors.JournalError` naming the file and the
    offset, unless ``stop_at_damage``: then the scan stops there and says why
    in :attr:`Scan.damage`.
    """
    data = path.read_bytes()
    scan = Scan(path)
    if not data:
        return scan

    def zero_tail(offset: int) -> bool:
        return data.count(0, offset) == len(data) - offset

    def problem(offset: int, what: str) -> Scan:
        if stop_at_damage:
            scan.damage = what
            return scan
        raise _damage(scan, offset, what)

    if not data.startswith(MAGIC):
        if MAGIC.startswith(data) or zero_tail(0):
            scan.torn = f"the file header is cut short ({len(data)} bytes)"
            return scan
        return problem(0, "it does not start with a pastset journal header (another file, or an older format)")
    offset = scan.end = len(MAGIC)
    while offset < len(data):
        rest = len(data) - offset
        if rest < HEADER_SIZE:
            scan.torn = f"a record header cut short ({rest} of {HEADER_SIZE} bytes)"
            return scan
        head = data[offset : offset + _HEADER.size]
        length, payload_crc, sequence = _HEADER.unpack(head)
        (head_crc,) = _CHECK.unpack_from(data, offset + _HEADER.size)
        if _crc(head) != head_crc:
            if zero_tail(offset):
                scan.torn = f"{rest} zero bytes"
                return scan
            return problem(offset, "a record header fails its checksum (a damaged length or sequence number)")
        start = offset + HEADER_SIZE
        if start + length > len(data):
            scan.torn = f"a record of {length} bytes cut short after {len(data) - start}"
            return scan
        payload = data[start : start + length]
        if _crc(payload) != payload_crc:
            return problem(offset, f"record {sequence} fails its checksum (its contents changed)")
        if sequence != scan.sequence + 1:
            kind = "a duplicated or replayed record" if sequence <= scan.sequence else "records are missing"
            return problem(offset, f"record {sequence} follows record {scan.sequence} ({kind})")
        try:
            record = wire.decode(payload)
        except Exception as err:
            return problem(offset, f"record {sequence} cannot be decoded ({err})")
        if not isinstance(record, tuple) or not record:
            return problem(offset, f"record {sequence} is not a journal record")
        scan.records.append(record)
        scan.sequence = sequence
        offset = scan.end = start + length
    return scan


def read_journal(path: Path) -> Iterator[tuple[Any, ...]]:
    """The records of a journal, in order; a torn tail is left out, damage raises JournalError."""
    yield from scan_journal(path).records


class Journal:
    """Appends records to one journal file; safe to use from many threads.

    Opening an existing file checks it: its records are in :attr:`recovered`
    for the space to replay, a torn tail is cut off (with a warning naming the
    file and the offset), and damage raises JournalError before anything is
    written.
    """

    def __init__(self, path: Path, sync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.sync = sync
        self.recovered: list[tuple[Any, ...]] = []
        sequence = 0
        if path.exists() and path.stat().st_size:
            scan = scan_journal(path)
            if scan.torn:
                log.warning(
                    "journal %s ends with a torn tail at offset %d (%s): cut off, as its operation was never "
                    "acknowledged",
                    path,
                    scan.end,
                    scan.torn,
                )
                os.truncate(path, scan.end)
            self.recovered, sequence = scan.records, scan.sequence
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size == 0:
            os.write(self._fd, MAGIC)
        self._lock = threading.Lock()
        self._sequence = sequence
        self.records = 0

    def write(self, record: tuple[Any, ...]) -> None:
        """Append ``record`` (durable against process death when this returns)."""
        data = wire.encode(record)
        with self._lock:
            self._sequence += 1
            os.write(self._fd, frame(self._sequence, data))
            if self.sync:
                os.fsync(self._fd)
            self.records += 1

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)
