"""``pypsitems``: run a command (or a Python function) over many items, each exactly once.

    pypsitems --files photos/ --recursive -- convert {} {}.png
    pypsitems --lines hosts.txt -- ping -c1 {}
    pypsitems --range 1-30 --chunk 5 -- render --frames {start} {end}
    pypsitems --files data/ --function analyse:summarise

Items go to the run's clients (PSPROCS on the hosts of PSHOSTS) through a leased
element, so each is processed exactly once even when a worker dies.  Results,
the run log and one session log per task land in the experiment directory;
running the same command again skips the items already done.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from pastset.commands import load_settings, parser_for
from pastset.commands.run import execute
from pastset.errors import PastSetError
from pastset.items.plan import Plan, collect_items, experiment_dir, experiment_name
from pastset.items.stager import Stager
from pastset.launch.run import Run, place_clients
from pastset.settings import configure_logging, is_this_host, this_host_names

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Plan the items, then run them with a whole run; exit 0 when every item succeeded."""
    argv = sys.argv[1:] if argv is None else argv
    settings = load_settings("pypsitems")
    if settings is None:
        return 2
    parser = parser_for("pypsitems", (__doc__ or "").split("\n\n")[0], settings)
    source = parser.add_argument_group("items (one of)")
    source.add_argument("--lines", default="", help="each non-empty line of FILE is an item")
    source.add_argument("--files", default="", help="each file in DIR is an item (its absolute path)")
    source.add_argument("--recursive", action="store_true", help="with --files: descend into subdirectories")
    source.add_argument("--glob", default="*", help="with --files: only names matching this pattern")
    source.add_argument("--range", default="", help="FIRST-LAST, cut into --chunk sized segments")
    source.add_argument("--chunk", type=int, default=1, help="with --range: numbers per item")
    parser.add_argument("--function", default="", help="MODULE:FUNCTION from PSBIN, called with each item")
    parser.add_argument("--shell", action="store_true", help="run the command through the shell")
    parser.add_argument(
        "--shared",
        action="store_true",
        help="with --files on other hosts: the directory is shared (NFS/SMB), process in place "
        "instead of copying items over SFTP",
    )
    parser.add_argument("--name", default="", help="experiment id (default: derived from command and items)")
    parser.add_argument("--results", default="", help="experiment base directory (default: user data dir)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND with {} (or {start} {end})")
    options = parser.parse_args(argv)
    configure_logging(settings, "pypsitems")
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if bool(command) == bool(options.function):
        sys.stderr.write("pypsitems: give either -- COMMAND ... or --function MODULE:FUNCTION\n")
        return 2
    try:
        items = collect_items(
            options.lines, options.files, options.recursive, options.glob, options.range, options.chunk
        )
        launcher, placement, _ = place_clients(settings)
        clients = len(placement)
        here = this_host_names()
        remote = [h for h in placement if not is_this_host(h, here)]
    except PastSetError as err:
        sys.stderr.write(f"pypsitems: {err}\n")
        return 2
    if not items:
        sys.stderr.write("pypsitems: no items found\n")
        return 2
    name = options.name or experiment_name(command, options.function, items)
    folder = experiment_dir(name, options.results)
    # Batch-launched clients share the job's file system: files are processed in place.
    copy = bool(options.files and remote and not options.shared and launcher == "ssh")
    if copy and settings.PSSSH.strip() != "ssh":
        sys.stderr.write(
            "pypsitems: PSSSH is a custom command, so files cannot be copied over SFTP; "
            "processing them in place (as with --shared)\n"
        )
        copy = False
    plan = Plan(
        name,
        str(folder),
        command,
        options.function,
        options.shell,
        not copy,
        socket.gethostname(),
        max(1, clients * settings.PSSLOTS),
        items,
    )
    app = Path(__file__).resolve().with_name("items_app.py")
    mode = "copying files over SFTP" if copy else "in place"
    sys.stderr.write(f"pypsitems: experiment {name}: {len(items)} items, {plan.workers} workers, {mode}, in {folder}\n")

    def stage(run: Run) -> None:
        if copy:
            Stager(run.connections, run.run_id, run.wiring.ns, run.wiring.secret, folder / "outputs")

    return execute(settings, str(app), [str(plan.save())], prog="pypsitems", started=stage)


if __name__ == "__main__":
    sys.exit(main())
