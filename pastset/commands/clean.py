"""``pypsclean``: remove the stray processes of runs that went wrong.

Processes are chosen by their run's identity (``--run RUN`` on a server or client
command line, ``PSRUN=RUN`` in an app's or task's environment), never by program
name, so other users' and other runs' processes are never touched.
"""

from __future__ import annotations

import sys

from ..proc import end_pids, processes_of_run
from ..runs import forget_run, list_runs
from ..settings import Settings, configure_logging
from . import parser_for

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Clean the named run, or every run whose pypsrun is gone."""
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings.load(run_helper=False)
    parser = parser_for(
        "pypsclean",
        "End the leftover processes of a run on this host: the named one, or every run whose "
        "pypsrun is no longer alive.",
        settings,
    )
    parser.add_argument("--run", action="append", default=[], help="the run to clean (repeatable)")
    parser.add_argument("--dry-run", "-n", action="store_true", help="only list what would be ended")
    options = parser.parse_args(argv)
    configure_logging(settings, "pypsclean")
    targets = options.run or [r["run"] for r in list_runs() if not r["alive"]]
    if not targets:
        print("pypsclean: no stale runs found (name one with --run RUN)")
        return 0
    for run_id in targets:
        pids = processes_of_run(run_id)
        if options.dry_run:
            print(f"{run_id}: would end {len(pids)} process(es) {' '.join(map(str, pids))}".rstrip())
            continue
        ended = end_pids(pids)
        forget_run(run_id)
        print(f"{run_id}: ended {len(ended)} process(es) {' '.join(map(str, ended))}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
