"""``pypsdeploy`` and ``pypserase``: install this pastset on the hosts of PSHOSTS, or remove it.

Both work on every host at once and write one status line per host to stderr
as soon as that host is done: the host, ``ok``, ``failed`` or ``skipped``, the
seconds it took, and what was done or why it failed.  They exit with status 1
if any host failed, naming each failed host and the cause, 2 on a usage or
configuration problem, else 0.  How and where is said in :mod:`pastset.launch.deploy`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pastset import __version__
from pastset.commands import load_settings, parser_for
from pastset.errors import PastSetError
from pastset.launch.deploy import ROOT, HostResult, deploy, erase
from pastset.launch.hosts import read_hosts_file
from pastset.launch.ssh import CONNECT_TIMEOUT
from pastset.launch.wheelhouse import build_wheelhouse, open_wheelhouse
from pastset.settings import Settings, configure_logging, is_this_host, this_host_names

__all__ = ["erase_main", "main"]


def _parser(prog: str, description: str, settings: Settings) -> argparse.ArgumentParser:
    parser = parser_for(prog, description, settings)
    parser.add_argument("hosts", nargs="*", help="hosts to work on (default: those of PSHOSTS and PSMASTER)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up connecting to a host after this long (default {CONNECT_TIMEOUT:.0f})",
    )
    return parser


def _hosts(settings: Settings, given: list[str]) -> tuple[list[str], list[str]]:
    """The other hosts to work on, and those named that are this machine (skipped), each once."""
    names = list(given)
    if not names:
        if settings.PSHOSTS:
            names = [entry.name for entry in read_hosts_file(settings.PSHOSTS)]
        if settings.PSMASTER:
            names.insert(0, settings.PSMASTER)
    if not names:
        raise PastSetError("no hosts: set PSHOSTS to a hosts file, or name the hosts on the command line")
    names = list(dict.fromkeys(names))
    here = this_host_names()
    local = {n for n in names if is_this_host(n, here)}
    return [n for n in names if n not in local], [n for n in names if n in local]


class _Status:
    """Writes the status lines, aligned, as results come in."""

    def __init__(self, hosts: list[str]) -> None:
        self.width = max((len(h) for h in hosts), default=0)

    def line(self, host: str, state: str, seconds: float, detail: str) -> None:
        sys.stderr.write(f"{host:<{self.width}}  {state:<7} {seconds:5.1f} s  {detail}\n")
        sys.stderr.flush()

    def result(self, result: HostResult) -> None:
        self.line(result.host, "ok" if result.ok else "failed", result.seconds, result.detail)


def _finish(prog: str, results: list[HostResult]) -> int:
    failed = [r for r in results if not r.ok]
    for result in failed:
        sys.stderr.write(f"{prog}: failed on {result.host}: {result.detail}\n")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``pypsdeploy``: install this pastset version in a virtual environment on every host."""
    argv = sys.argv[1:] if argv is None else argv
    settings = load_settings("pypsdeploy")
    if settings is None:
        return 2
    parser = _parser(
        "pypsdeploy",
        f"Install this pastset ({__version__}) with its dependencies on every host of PSHOSTS (and PSMASTER),\n"
        f"in a virtual environment at {ROOT}/NODE/{__version__}\n"
        "there, which pypsrun then uses. The wheels are made here and copied over SFTP, so the hosts\n"
        "need no package index. Hosts that have this deployment already are left alone.",
        settings,
    )
    parser.add_argument("--python", metavar="PATH", help="the Python on the hosts to make the environment with")
    parser.add_argument(
        "--wheelhouse",
        metavar="DIR",
        type=Path,
        help="keep the wheels in DIR and reuse them next time (default: made afresh in a temporary directory)",
    )
    options = parser.parse_args(argv)
    configure_logging(settings, "pypsdeploy")
    try:
        hosts, local = _hosts(settings, options.hosts)
    except PastSetError as err:
        sys.stderr.write(f"pypsdeploy: {err}\n")
        return 2
    status = _Status(hosts + local)
    for host in local:
        status.line(host, "skipped", 0.0, "this machine: its clients run with this Python")
    if settings.sources.get("PSPYTHON", "default") != "default":
        sys.stderr.write(f"pypsdeploy: PSPYTHON is set, so pypsrun will use {settings.PSPYTHON} and not these\n")
    if not hosts:
        return 0
    with tempfile.TemporaryDirectory(prefix="pastset-wheels-") as scratch:
        start = time.monotonic()
        try:
            house = open_wheelhouse(options.wheelhouse) if options.wheelhouse else build_wheelhouse(Path(scratch))
        except PastSetError as err:
            sys.stderr.write(f"pypsdeploy: {err}\n")
            return 1
        sys.stderr.write(
            f"pypsdeploy: pastset {house.version}, {len(house.wheels)} wheels ({house.size / 1e6:.1f} MB, "
            f"ready in {time.monotonic() - start:.1f} s), to {len(hosts)} host(s)\n"
        )
        try:
            results = deploy(
                hosts,
                house,
                python=options.python,
                accept_unknown=settings.PSSSHACCEPT,
                timeout=options.timeout,
                done=status.result,
            )
        except KeyboardInterrupt:
            sys.stderr.write(
                "pypsdeploy: interrupted; a host not reported may be half done: pypsdeploy finishes it, "
                "pypserase removes it\n"
            )
            return 130
    return _finish("pypsdeploy", results)


def erase_main(argv: list[str] | None = None) -> int:
    """``pypserase``: remove what pypsdeploy installed on every host."""
    argv = sys.argv[1:] if argv is None else argv
    settings = load_settings("pypserase")
    if settings is None:
        return 2
    parser = _parser(
        "pypserase",
        f"Remove the environment pypsdeploy made for this pastset ({__version__}) on every host of PSHOSTS\n"
        "(and PSMASTER); only directories that pypsdeploy made are touched.",
        settings,
    )
    parser.add_argument("--all", action="store_true", help="remove the deployments of every pastset version")
    options = parser.parse_args(argv)
    configure_logging(settings, "pypserase")
    try:
        hosts, local = _hosts(settings, options.hosts)
    except PastSetError as err:
        sys.stderr.write(f"pypserase: {err}\n")
        return 2
    status = _Status(hosts + local)
    for host in local:
        status.line(host, "skipped", 0.0, "this machine: pypsdeploy installs nothing here")
    try:
        results = erase(
            hosts,
            __version__,
            everything=options.all,
            accept_unknown=settings.PSSSHACCEPT,
            timeout=options.timeout,
            done=status.result,
        )
    except KeyboardInterrupt:
        sys.stderr.write("pypserase: interrupted\n")
        return 130
    return _finish("pypserase", results)


if __name__ == "__main__":
    sys.exit(main())
