"""Check a journal, or recover what precedes its damage: ``python -m pastset.commands.journal``.

``check FILE`` says whether a run's journal (PSJOURNAL/RUN.journal) is intact,
ends in a torn tail (cut off at the next start), or is damaged, naming the
offset.  ``recover FILE`` keeps the records before the damage: the damaged file
is renamed ``FILE.damaged-TIME`` and the good prefix takes its place, so the
next server of the run starts from the state just before the damage.  Run it
only while no server of that run is running.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pastset.core.journal import scan_journal
from pastset.errors import JournalError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Check or recover a journal file; 0 if it is usable (after recovery), 1 if damaged, 2 on bad usage."""
    parser = argparse.ArgumentParser(
        prog="python -m pastset.commands.journal",
        description="Check a pastset journal, or keep the records that precede its damage.",
    )
    parser.add_argument("action", choices=("check", "recover"), help="check: report; recover: keep the good prefix")
    parser.add_argument("file", type=Path, help="the journal file (PSJOURNAL/RUN.journal)")
    options = parser.parse_args(argv)
    path: Path = options.file
    if not path.is_file():
        sys.stderr.write(f"journal: no file {path}\n")
        return 2
    try:
        scan = scan_journal(path, stop_at_damage=True)
    except JournalError as err:  # pragma: no cover - stop_at_damage reports instead of raising
        sys.stderr.write(f"journal: {err}\n")
        return 1
    size = path.stat().st_size
    good = f"{len(scan.records)} good record(s) in the first {scan.end} of {size} bytes"
    if not scan.damage:
        tail = f"; a torn tail at offset {scan.end} ({scan.torn}) is cut off at the next start" if scan.torn else ""
        print(f"{path}: intact, {good}{tail}")
        return 0
    if options.action == "check":
        print(f"{path}: damaged at offset {scan.end}: {scan.damage}; {good}")
        print(f"keep them with: python -m pastset.commands.journal recover {path}")
        return 1
    data = path.read_bytes()[: scan.end]
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    tmp = path.with_name(f".{path.name}.recovering")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(path, kept)
    os.replace(tmp, path)
    print(f"{path}: kept {good}; dropped {size - scan.end} bytes from offset {scan.end} ({scan.damage})")
    print(f"the damaged file is {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
