"""``pypsclean``: remove the stray processes of runs that went wrong.

Processes are chosen by their run's identity (``--run RUN`` on a server or client
command line, ``PSRUN=RUN`` in an app's or task's environment), never by program
name, so other users' and other runs' processes are never touched.  With
``PSSTORE`` naming a Redis store, the run's keys there are removed as well.
"""

from __future__ import annotations

import socket
import sys

from pastset.commands import parser_for
from pastset.entrypoints import MODULES
from pastset.errors import PastSetError
from pastset.launch.run import remote_command
from pastset.launch.ssh import RemoteProcess, SshCommandProcess, connect
from pastset.proc import end_pids, processes_of_run
from pastset.runs import forget_run, list_runs
from pastset.settings import Settings, configure_logging

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
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help="also clean these hosts over SSH (default: the hosts the run used, from its run file)",
    )
    parser.add_argument("--here", action="store_true", help="only this host")
    options = parser.parse_args(argv)
    configure_logging(settings, "pypsclean")
    known = {r["run"]: r for r in list_runs()}
    targets = options.run or [run for run, info in known.items() if not info["alive"]]
    if not targets:
        print("pypsclean: no stale runs found (name one with --run RUN)")
        return 0
    status = 0
    for run_id in targets:
        pids = processes_of_run(run_id)
        launcher = int(known.get(run_id, {}).get("pid", 0) or 0)
        if options.run and not options.here and _is_pypsrun(launcher):
            pids.append(launcher)  # a hung pypsrun of a named run goes too
        where = "" if options.here else f" on {socket.gethostname()}"
        if options.dry_run:
            print(f"{run_id}: would end {len(pids)} process(es){where} {' '.join(map(str, pids))}".rstrip())
        else:
            ended = end_pids(pids)
            print(f"{run_id}: ended {len(ended)} process(es){where} {' '.join(map(str, ended))}".rstrip())
        status |= _clean_store(run_id, options.dry_run, settings)
        if options.here:
            continue
        info = known.get(run_id, {})
        for host in options.host or info.get("hosts", []):
            status |= _clean_remote(host, run_id, options.dry_run, info.get("ssh") or settings.PSSSH, settings)
        if not options.dry_run:
            forget_run(run_id)
    return status


def _clean_store(run_id: str, dry_run: bool, settings: Settings) -> int:
    """Remove the run's keys from the Redis store named by PSSTORE (if any)."""
    if not settings.PSSTORE:
        return 0
    from pastset.transport.redis_admin import count_keys, purge
    from pastset.transport.redis_store import Keys, connect, parse_store

    try:
        address = parse_store(settings.PSSTORE)
        assert address is not None
        client = connect(address)
        keys = Keys(run_id)
        if dry_run:
            print(
                f"{run_id}: would remove {count_keys(client, keys, address.cluster)} key(s) from {address.redacted()}"
            )
        else:
            print(f"{run_id}: removed {purge(client, keys, address.cluster)} key(s) from {address.redacted()}")
        client.close()
    except Exception as err:
        print(f"{run_id}: cannot clean the Redis store (PSSTORE): {err}", file=sys.stderr)
        return 1
    return 0


def _is_pypsrun(pid: int) -> bool:
    """True if ``pid`` is a live pypsrun (guards against a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return pid > 0 and any(a.endswith((b"pypsrun", MODULES["run"].encode())) for a in args)


def _clean_remote(host: str, run_id: str, dry_run: bool, ssh: str, settings: Settings) -> int:
    """Run pypsclean for ``run_id`` on ``host`` and show what it did."""
    args = ["--run", run_id, *(["--dry-run"] if dry_run else [])]
    command = remote_command(settings, "clean", *args)
    env = {"PSLOGLEVEL": settings.PSLOGLEVEL}
    try:
        if ssh.strip() != "ssh":
            proc: RemoteProcess = SshCommandProcess(ssh, host, command, env)
        else:
            connection = connect(host, settings.PSSSHACCEPT)
            proc = connection.start(command, env, sys.stdout.buffer, sys.stderr.buffer)
        proc.close_stdin()
        code = proc.wait(60)
    except PastSetError as err:
        print(f"{run_id}: {host}: {err}", file=sys.stderr)
        return 1
    first = proc.readline(0).strip()
    if first:
        print(f"{first} on {host}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
