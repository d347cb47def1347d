"""A throw-away, real, single-node SLURM cluster for tests.

Usage::

    from slurm_cluster import SlurmCluster

    with SlurmCluster() as slurm:
        job_id = slurm.submit("#!/bin/sh\\nhostname\\n", "-n", "2")
        state, exit_code = slurm.wait(job_id, timeout=30)
        print(slurm.read_output(job_id))

Everything lives in one private temporary directory (``slurm.conf``, munge
key/socket/pid/seed, controller state, slurmd spool, daemon logs, job output):

* a fresh munge key is generated and a private ``munged`` is started as the
  ``munge`` user with its own socket; slurm is pointed at it with
  ``AuthInfo=socket=...`` (used by auth/munge *and* cred/munge);
* ``slurmctld -D`` and ``slurmd -D`` run in the foreground as children of
  this process (``SlurmUser=root``), on free loopback ports, without systemd
  and without cgroups (``proctrack/linuxproc``, ``task/none``);
* readiness is detected by polling ``scontrol`` (bounded deadline, no fixed
  sleeps); ``start()`` returns once the node is ``IDLE``;
* on exit -- also on exceptions -- remaining jobs are cancelled, exactly the
  daemons started here are stopped by pid (SIGTERM, bounded wait, SIGKILL)
  and the directory is removed.

Requirements: root, Debian packages ``slurmctld slurmd slurm-client munge``
(see ``tests/infra/slurm-install.sh``).  No slurmdbd: job state comes from
``scontrol show job`` (finished jobs stay visible for ``MinJobAge`` seconds).

Multi-node: ``SlurmCluster(hosts=netns_hosts, controller_address=...)`` runs
one ``slurmd`` inside each given host (anything with ``name``, ``address``
and ``command(argv)``, such as the network-namespace hosts of
``netns_hosts.NetnsHosts``), while ``slurmctld`` and ``munged`` stay in the
root namespace; every slurmd uses the one munge socket, which works across
network namespaces since it is a unix socket on the shared filesystem.
:func:`netns_cluster` builds both in one step, with no sshd on the hosts::

    with netns_cluster(3, prefix="srn") as slurm:   # nodes srn-h1 .. srn-h3
        job = slurm.submit(script, "-N", "3", "-n", "3")

This module only uses the standard library (and netns_hosts, for netns_cluster).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

__all__ = [
    "DIR_PREFIX",
    "TERMINAL_STATES",
    "JobStatus",
    "SlurmCluster",
    "SlurmError",
    "StrayProcess",
    "find_stray_processes",
    "netns_cluster",
    "slurm_available",
]

#: Prefix of every temporary directory created by :class:`SlurmCluster`;
#: used by :func:`find_stray_processes` to recognise our processes.
DIR_PREFIX = "pastset-slurm-"

#: Job states after which a job will not change any more.
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)

_DAEMON_NAMES = ("munged", "slurmctld", "slurmd", "slurmstepd", "slurmscriptd")
_REQUIRED_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel")
_POLL = 0.05  # seconds between readiness/state polls
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL
_KV_RE = re.compile(r"(\S+?)=(\S*)")


class SlurmError(RuntimeError):
    """Something went wrong starting, using or stopping the test cluster."""


class JobStatus(NamedTuple):
    """Final status of a job, as returned by :meth:`SlurmCluster.wait`."""

    state: str
    """Base job state, e.g. ``"COMPLETED"`` or ``"FAILED"``."""
    exit_code: int
    """Exit code of the batch script (``ExitCode=<code>:<signal>``); if the
    script was killed by a signal this is ``128 + signal``."""


@dataclass(frozen=True)
class StrayProcess:
    """A running process that belongs to a (possibly former) test cluster."""

    pid: int
    ppid: int
    name: str
    cmdline: str

    @property
    def orphaned(self) -> bool:
        """A daemon whose owner (the test process that started it) is gone.

        Daemons of a live cluster are children of the process that started
        them; orphans are re-parented to init.  ``slurmstepd`` always runs
        detached, so this is only meaningful for munged/slurmctld/slurmd.
        """
        return self.ppid == 1 and self.name != "slurmstepd"


def slurm_available() -> str | None:
    """Return ``None`` if a cluster can be started here, else the reason why not."""
    if os.geteuid() != 0:
        return "SlurmCluster needs root (slurmd runs jobs, munged runs as munge)"
    missing = [b for b in _REQUIRED_BINARIES if _which(b) is None]
    if missing:
        return f"missing {', '.join(missing)}; run tests/infra/slurm-install.sh"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user; run tests/infra/slurm-install.sh"
    return None


def _which(name: str) -> str | None:
    """Find ``name`` on PATH, also looking in the sbin directories."""
    path = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(name, path=path)


def _read_proc(pid: int, what: str) -> bytes:
    """Read ``/proc/<pid>/<what>``; empty if the process is gone or hidden."""
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def find_stray_processes(root: str | os.PathLike[str] | None = None) -> list[StrayProcess]:
    """List running munged/slurmctld/slurmd/slurmstepd/slurmscriptd of test clusters.

    A process is reported if its command line references ``root`` (or, when
    ``root`` is ``None``, any directory whose name starts with
    :data:`DIR_PREFIX`), or -- for ``slurmstepd``/``slurmscriptd``, whose
    command lines do not name a config file -- if its environment has
    ``SLURM_CONF`` pointing there.  With ``root=None`` this includes the daemons of clusters that are
    still running; :attr:`StrayProcess.orphaned` tells the leftovers of dead
    test processes apart.  For diagnostics only: nothing is killed here.
    """
    needle = (os.fspath(root).rstrip("/") + "/") if root is not None else "/" + DIR_PREFIX
    needle_b = needle.encode()
    conf_b = b"SLURM_CONF=" + (needle_b if root is not None else b"")
    found: list[StrayProcess] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        name = _read_proc(pid, "comm").decode(errors="replace").strip()
        if name not in _DAEMON_NAMES:
            continue
        raw = _read_proc(pid, "cmdline")
        ours = needle_b in raw
        if not ours:
            for var in _read_proc(pid, "environ").split(b"\0"):
                if var.startswith(conf_b) and needle_b in var:
                    ours = True
                    break
        if ours:
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            stat = _read_proc(pid, "stat").decode(errors="replace").rpartition(")")[2].split()
            ppid = int(stat[1]) if len(stat) > 1 else 0
            found.append(StrayProcess(pid, ppid, name, cmdline))
    return found


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are currently free on all addresses."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))  # slurmd/slurmctld listen on INADDR_ANY
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_hardware() -> str:
    """Hardware part of a NodeName line as detected by ``slurmd -C``.

    Matching slurmd's own view exactly avoids warnings and, worse, the node
    being drained for a "Low socket*core*thread count".  Falls back to
    ``CPUs=<os.cpu_count()>``.
    """
    exe = _which("slurmd")
    fallback = f"CPUs={os.cpu_count() or 1}"
    if exe is None:
        return fallback
    try:
        out = subprocess.run([exe, "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return fallback
    kv = _parse_kv(out.splitlines()[0] if out else "")
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    if "CPUs" not in kv:
        return fallback
    return " ".join(f"{k}={kv[k]}" for k in keys if k in kv)


def _short_hostname() -> str:
    return socket.gethostname().split(".")[0]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no {path.name}>"
    return "\n".join(text.splitlines()[-lines:])


def _parse_kv(text: str, last_key: str | None = None) -> dict[str, str]:
    """Parse ``scontrol -o`` one-line output into a dict.

    Values are taken up to the next blank, except for ``last_key`` (e.g.
    ``Reason``, free text printed last by ``scontrol -o show node``), whose
    value runs to the end of the line.
    """
    rest = ""
    if last_key:
        text, _, rest = text.strip().partition(f" {last_key}=")
    info = {m.group(1): m.group(2) for m in _KV_RE.finditer(text)}
    if rest:
        info[str(last_key)] = rest
    return info


class SlurmCluster:
    """Context manager running a private single-node SLURM cluster.

    Args:
        cpus: CPUs of the node; by default the hardware as detected by
            ``slurmd -C`` (CPUs, sockets, cores, threads, memory).  If given,
            only ``CPUs=`` is configured; it must not exceed what slurmd
            detects, or the node is drained.
        node_name: slurm node name; defaults to the short hostname.
        base_dir: where to create the temporary directory (default: the
            system temp dir).  Keep it short: unix socket paths are limited.
        startup_timeout: seconds allowed for munged + slurmctld + slurmd to
            come up and the node to become IDLE.
        stop_timeout: seconds to wait for each daemon after SIGTERM before
            SIGKILL.
        export_env: set ``os.environ["SLURM_CONF"]`` while the cluster runs
            (restored on exit) so that code under test finds the cluster.
        keep_dir: do not delete the temporary directory on exit (debugging).
        debug: ``SlurmctldDebug``/``SlurmdDebug`` level.
        extra_conf: extra ``slurm.conf`` lines appended verbatim (later
            settings override earlier ones).
        min_job_age: ``MinJobAge``: seconds a finished job stays visible.
        hosts: run one slurmd inside each of these hosts (objects with
            ``name``, ``address`` and ``command(argv) -> argv``) instead of
            one slurmd here; node names are the hosts' names.
        controller_address: the address at which the hosts reach slurmctld
            (required with ``hosts``; e.g. ``NetnsHosts.gateway_address``).
        cluster_name: ``ClusterName`` (default: unique per cluster, so that
            concurrent clusters never mix).
    """

    def __init__(
        self,
        *,
        cpus: int | None = None,
        node_name: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        export_env: bool = True,
        keep_dir: bool = False,
        debug: str = "info",
        extra_conf: str | Sequence[str] = (),
        min_job_age: int = 3600,
        hosts: Sequence[Any] = (),
        controller_address: str = "",
        cluster_name: str | None = None,
    ) -> None:
        self.cpus = cpus
        self.node_name = node_name or _short_hostname()
        self.hostname = _short_hostname()
        self.base_dir = base_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.export_env = export_env
        self.keep_dir = keep_dir
        self.debug = debug
        self.extra_conf = [extra_conf] if isinstance(extra_conf, str) else list(extra_conf)
        self.min_job_age = min_job_age
        self.hosts = list(hosts)
        if self.hosts and not controller_address:
            raise ValueError("hosts need controller_address: where they reach slurmctld")
        self.controller_address = controller_address or "127.0.0.1"
        self.cluster_name = cluster_name or f"ps{os.getpid():x}{os.urandom(3).hex()}"
        #: the slurm node names, in order
        self.node_names = [h.name for h in self.hosts] or [self.node_name]

        self._root: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._saved_env: str | None = None
        self._env_exported = False
        self._stdout_paths: dict[int, str] = {}
        self._hardware = ""
        self._last_node_info: dict[str, str] = {}
        self.ctld_port = 0
        self.slurmd_port = 0
        #: Wall-clock seconds spent in :meth:`start` and :meth:`stop`.
        self.startup_seconds = 0.0
        self.shutdown_seconds = 0.0
        #: Unusual events during the last :meth:`stop` (SIGKILLs, ...).
        self.problems: list[str] = []
        #: Directory of the most recent :meth:`start` (kept for diagnostics;
        #: it no longer exists after :meth:`stop` unless ``keep_dir``).
        self.last_root: Path | None = None

    # ------------------------------------------------------------------ paths
    @property
    def root(self) -> Path:
        """The cluster's private temporary directory."""
        if self._root is None:
            raise SlurmError("cluster not started")
        return self._root

    @property
    def conf_path(self) -> Path:
        """Path of the generated ``slurm.conf``."""
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        """Path of the private munged socket."""
        return self.root / "munge" / "munge.sock"

    @property
    def job_dir(self) -> Path:
        """Default working directory for submitted jobs (``slurm-%j.out`` go here)."""
        return self.root / "jobs"

    @property
    def log_dir(self) -> Path:
        """Directory with ``slurmctld.log``, ``slurmd.log`` and ``<daemon>.stdout``."""
        return self.root / "log"

    @property
    def env(self) -> dict[str, str]:
        """Environment for slurm client commands: ``os.environ`` + ``SLURM_CONF``.

        Inherited ``SLURM_*`` variables (e.g. when the tests themselves run
        inside a slurm job) are removed so they cannot leak into submissions.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf_path)
        path = env.get("PATH", os.defpath)
        for extra in ("/usr/sbin", "/sbin"):
            if extra not in path.split(":"):
                path += ":" + extra
        env["PATH"] = path
        return env

    # -------------------------------------------------------- context manager
    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- start
    def start(self) -> None:
        """Create the state directory, start munged, slurmctld and slurmd.

        Returns when the node is IDLE.  On failure everything started so far
        is stopped again and :class:`SlurmError` is raised with log excerpts.
        If a daemon loses the race for its (pre-checked free) port, start-up
        is retried with new ports.
        """
        if self._root is not None:
            raise SlurmError("cluster already started")
        reason = slurm_available()
        if reason:
            raise SlurmError(reason)
        orphans = [p for p in find_stray_processes() if p.orphaned]
        if orphans:  # diagnostics only: never kill by name
            warnings.warn(
                "orphaned daemons of earlier test clusters are still running: "
                + "; ".join(f"pid {p.pid}: {p.cmdline}" for p in orphans),
                RuntimeWarning,
                stacklevel=2,
            )
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        for attempt in range(3):
            try:
                self._start_once(deadline)
                break
            except SlurmError as e:
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
        self.startup_seconds = time.monotonic() - t0

    def _start_once(self, deadline: float) -> None:
        self._root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=self.base_dir))
        self.last_root = self._root
        try:
            if len(os.fsencode(self.munge_socket)) > _UNIX_PATH_MAX - 20:
                raise SlurmError(f"temp dir path too long for unix sockets: {self.root}")
            self._make_dirs()
            self._write_config()
            self._start_munged(deadline)
            self._export()
            self._start_slurmctld(deadline)
            self._start_slurmd(deadline)
        except BaseException:
            self.stop()
            raise

    def _make_dirs(self) -> None:
        munge = pwd.getpwnam("munge")
        # munged (user munge) must traverse the root; job output is written by
        # root-run jobs, so 0755 is enough and leaks nothing secret.
        self.root.chmod(0o755)
        for sub in ("etc", "state", "spool", "log", "run", "jobs"):
            (self.root / sub).mkdir(mode=0o755)
        for node in self.node_names:
            (self.root / "spool" / node).mkdir(mode=0o755)
        # munged insists on secure dirs: owned by it, not group/other-writable.
        mdir = self.root / "munge"
        mdir.mkdir(mode=0o755)
        os.chown(mdir, munge.pw_uid, munge.pw_gid)
        key = mdir / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.write(fd, os.urandom(128))  # same size as `mungekey` default (1024 bits)
        finally:
            os.close(fd)
        os.chown(key, munge.pw_uid, munge.pw_gid)

    def slurm_conf_text(self) -> str:
        """The ``slurm.conf`` contents used for this cluster."""
        r = self.root
        lines = [
            "# generated by tests/infra/slurm_cluster.py",
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.hostname}({self.controller_address})",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool' / '%n'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd-%n.log'}",
            f"SlurmctldDebug={self.debug}",
            f"SlurmdDebug={self.debug}",
            f"PlugStackConfig={r / 'etc' / 'plugstack.conf'}",
            "MailProg=/bin/true",
            # no cgroups anywhere
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            # scheduling: cores only (memory not consumable, so jobs that do
            # not ask for memory can share the node).  batch_sched_delay=0 only
            # takes effect after the main scheduler's first pass, which comes
            # ~3 s after start-up; bf_interval=1 lets the backfill scheduler
            # start batch jobs within ~1 s from the very beginning.
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0,bf_interval=1",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            "KillWait=2",  # scancel/timeout: SIGTERM -> SIGKILL after 2 s
            "InactiveLimit=0",
            "SlurmdTimeout=60",
            "SlurmctldTimeout=60",
            *self._node_lines(),
            f"PartitionName=debug Nodes={','.join(self.node_names)} Default=YES MaxTime=INFINITE State=UP",
            *self.extra_conf,
        ]
        return "\n".join(lines) + "\n"

    def _node_lines(self) -> list[str]:
        if not self.hosts:
            return [
                f"NodeName={self.node_name} NodeHostname={self.hostname} NodeAddr=127.0.0.1 "
                f"{self._hardware} State=UNKNOWN"
            ]
        return [
            f"NodeName={h.name} NodeHostname={h.name} NodeAddr={h.address} {self._hardware} State=UNKNOWN"
            for h in self.hosts
        ]

    def _write_config(self) -> None:
        self.ctld_port, self.slurmd_port = _free_ports(2)
        self._hardware = f"CPUs={self.cpus}" if self.cpus else _node_hardware()
        (self.root / "etc" / "plugstack.conf").write_text("")
        self.conf_path.write_text(self.slurm_conf_text())

    def _spawn(self, name: str, argv: list[str], *, user: str | None = None) -> subprocess.Popen[bytes]:
        """Start a daemon in the foreground; its stdout/stderr go to ``log/<name>.stdout``."""
        with open(self.log_dir / f"{name}.stdout", "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.root,
                start_new_session=True,  # keep terminal signals (^C) away
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        self._procs[name] = proc
        return proc

    def _check_alive(self, name: str) -> None:
        proc = self._procs[name]
        if proc.poll() is not None:
            raise SlurmError(
                f"{name} exited with {proc.returncode} during start-up\n"
                f"--- {name}.stdout ---\n{_tail(self.log_dir / f'{name}.stdout')}\n"
                f"--- {name}.log ---\n{_tail(self._log_path(name))}"
            )

    def _wait_for(
        self,
        what: str,
        deadline: float,
        daemon: str,
        probe: Callable[[], bool],
        details: Callable[[], str] = str,
    ) -> None:
        """Poll ``probe()`` until true; fail fast if ``daemon`` dies."""
        while True:
            self._check_alive(daemon)
            if probe():
                return
            if time.monotonic() > deadline:
                raise SlurmError(
                    f"timed out waiting for {what} {details()}\n--- {daemon}.log ---\n{_tail(self._log_path(daemon))}"
                )
            time.sleep(_POLL)

    def _start_munged(self, deadline: float) -> None:
        m = self.root / "munge"
        munged = _which("munged")
        assert munged is not None
        self._spawn(
            "munged",
            [
                munged,
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={m / 'munge.key'}",
                f"--pid-file={m / 'munged.pid'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
            user="munge",
        )
        self._wait_for("munged socket", deadline, "munged", self._munge_ready)

    def _munge_ready(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(os.fspath(self.munge_socket))
            except OSError:
                return False
        return True

    def _start_slurmctld(self, deadline: float) -> None:
        exe = _which("slurmctld")
        assert exe is not None
        # -i: ignore (nonexistent) state; -D: foreground, stoppable by pid
        self._spawn("slurmctld", [exe, "-D", "-i", "-f", str(self.conf_path)])
        self._wait_for("slurmctld (scontrol ping)", deadline, "slurmctld", self._ctld_up)

    def _ctld_up(self) -> bool:
        r = self.run("scontrol", "ping", check=False, timeout=10)
        return r.returncode == 0 and "UP" in r.stdout

    def _slurmd_daemon(self, node: str) -> str:
        return "slurmd" if not self.hosts else f"slurmd-{node}"

    def _start_slurmd(self, deadline: float) -> None:
        exe = _which("slurmd")
        assert exe is not None
        if not self.hosts:
            self._spawn("slurmd", [exe, "-D", "-f", str(self.conf_path), "-N", self.node_name])
        for host in self.hosts:  # each inside its host; all started before any is waited for
            self._spawn(
                self._slurmd_daemon(host.name), host.command([exe, "-D", "-f", str(self.conf_path), "-N", host.name])
            )
        for node in self.node_names:
            self._wait_for(
                f"node {node} IDLE",
                deadline,
                self._slurmd_daemon(node),
                lambda node=node: self._node_idle(node),  # type: ignore[misc]
                lambda: (
                    f"(last seen: {self._last_node_info.get('State')}, reason {self._last_node_info.get('Reason')})"
                ),
            )

    def node_info(self, node: str | None = None) -> dict[str, str]:
        """``scontrol show node`` of a node (default: the first), as a dict."""
        r = self.run("scontrol", "-o", "show", "node", node or self.node_names[0], check=False)
        return _parse_kv(r.stdout, last_key="Reason") if r.returncode == 0 else {}

    def node_state(self, node: str | None = None) -> str:
        """A node's state as reported by slurmctld, e.g. ``"IDLE"``."""
        return self.node_info(node).get("State", "")

    def _node_idle(self, node: str) -> bool:
        info = self._last_node_info = self.node_info(node)
        state = info.get("State", "")
        if state == "IDLE":
            return True
        if "DRAIN" in state:
            # slurmd registered but was rejected (e.g. fewer CPUs than
            # configured): ReturnToService does not undo that, so fail now
            raise SlurmError(f"node {node} is {state}: {info.get('Reason')}")
        return False

    def _export(self) -> None:
        if self.export_env and not self._env_exported:
            self._saved_env = os.environ.get("SLURM_CONF")
            os.environ["SLURM_CONF"] = str(self.conf_path)
            self._env_exported = True

    def _unexport(self) -> None:
        if self._env_exported:
            if self._saved_env is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = self._saved_env
            self._env_exported = False

    # ------------------------------------------------------------ client API
    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a slurm client command (``sbatch``, ``squeue``, ...) against this cluster.

        ``env`` entries are added to / override :attr:`env`.  With ``check``
        a non-zero exit raises :class:`SlurmError` including stderr.
        """
        full_env = self.env
        if env:
            full_env.update(env)
        r = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd if cwd is not None else self.job_dir,
            timeout=timeout,
            check=False,
        )
        if check and r.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr.strip()}")
        return r

    def submit(
        self,
        script: str | os.PathLike[str],
        *sbatch_args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        script_args: Sequence[str] = (),
    ) -> int:
        """Submit a batch job with ``sbatch`` and return its job id.

        Args:
            script: a path (``os.PathLike``, or a one-line ``str`` naming an
                existing file) or the script text itself (passed on stdin;
                ``#!/bin/sh`` is prepended if it has no ``#!`` line).
            sbatch_args: extra sbatch options, e.g. ``"-n", "2"``.
            env: variables added to / overriding the submission environment;
                with sbatch's default ``--export=ALL`` the job sees them too.
            script_args: arguments for a script given as a path.
            cwd: submission/working directory (default :attr:`job_dir`);
                the default output file ``slurm-<id>.out`` is written there.
        """
        argv = ["sbatch", "--parsable", *sbatch_args]
        stdin: str | None = None
        if isinstance(script, os.PathLike) or ("\n" not in script and os.path.isfile(script)):
            argv += [os.fspath(script), *script_args]
        else:
            stdin = script if script.startswith("#!") else "#!/bin/sh\n" + script
        r = self.run(*argv, env=env, input=stdin, cwd=cwd)
        first = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        try:
            return int(first.split(";")[0])
        except ValueError:
            raise SlurmError(f"cannot parse sbatch output {r.stdout!r} {r.stderr!r}") from None

    def job_info(self, job_id: int) -> dict[str, str] | None:
        """``scontrol show job`` as a dict, or ``None`` if slurmctld forgot the job."""
        r = self.run("scontrol", "-o", "show", "job", str(job_id), check=False)
        if r.returncode != 0:
            if "Invalid job id" in r.stderr:
                return None
            raise SlurmError(f"scontrol show job {job_id}: {r.stderr.strip()}")
        info = _parse_kv(r.stdout)
        if "StdOut" in info:
            self._stdout_paths[job_id] = info["StdOut"]
        return info

    def job_state(self, job_id: int) -> str:
        """Current base state of a job (``PENDING``, ``RUNNING``, ``COMPLETED``...)."""
        info = self.job_info(job_id)
        if info is None:
            raise SlurmError(f"job {job_id} unknown to slurmctld (purged after MinJobAge?)")
        return info.get("JobState", "")

    def wait(self, job_id: int, timeout: float = 60.0) -> JobStatus:
        """Wait until the job reaches a terminal state; return ``(state, exit_code)``.

        Raises :class:`TimeoutError` (with the last state) if it does not
        finish within ``timeout`` seconds, :class:`SlurmError` if the job is
        unknown.
        """
        deadline = time.monotonic() + timeout
        state = "?"
        while True:
            info = self.job_info(job_id)
            if info is None:
                raise SlurmError(f"job {job_id} unknown to slurmctld")
            state = info.get("JobState", "?")
            if state in TERMINAL_STATES:
                code, _, sig = info.get("ExitCode", "0:0").partition(":")
                exit_code = int(code or 0)
                if exit_code == 0 and sig and int(sig):
                    exit_code = 128 + int(sig)
                return JobStatus(state, exit_code)
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state} after {timeout}s")
            time.sleep(_POLL)

    def output_path(self, job_id: int) -> Path:
        """The job's stdout file (``StdOut=`` of ``scontrol show job``)."""
        if job_id not in self._stdout_paths:
            self.job_info(job_id)
        try:
            return Path(self._stdout_paths[job_id])
        except KeyError:
            return self.job_dir / f"slurm-{job_id}.out"

    def read_output(self, job_id: int) -> str:
        """Contents of the job's stdout file."""
        return self.output_path(job_id).read_text(errors="replace")

    def _log_path(self, daemon: str) -> Path:
        if daemon == "munged":  # with --foreground munged logs to stderr only
            return self.log_dir / "munged.stdout"
        if daemon == "slurmd" and self.hosts:
            daemon = self._slurmd_daemon(self.node_names[0])
        return self.log_dir / f"{daemon}.log"

    def log(self, daemon: str) -> str:
        """Contents of a daemon log (``slurmctld``, ``slurmd`` or ``munged``)."""
        path = self._log_path(daemon)
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ stop
    def _cancel_jobs(self) -> None:
        """Cancel all jobs and wait until they are gone, within :attr:`stop_timeout`.

        Client commands get the remaining time as their timeout: with a dying
        slurmctld they would otherwise retry for ``MessageTimeout`` seconds.
        """
        proc = self._procs.get("slurmctld")
        if proc is None or proc.poll() is not None:
            return
        deadline = time.monotonic() + self.stop_timeout

        def client(*argv: str) -> subprocess.CompletedProcess[str]:
            return self.run(*argv, check=False, timeout=max(0.5, deadline - time.monotonic()))

        ids = client("squeue", "-h", "-o", "%i").stdout.split()
        if not ids:
            return
        client("scancel", *ids)
        while time.monotonic() < deadline:
            q = client("squeue", "-h", "-o", "%i")
            if q.returncode != 0 or not q.stdout.split():
                return
            time.sleep(_POLL)

    def _terminate(self, names: Sequence[str]) -> list[str]:
        """SIGTERM the given daemons (by pid), wait bounded, then SIGKILL."""
        problems: list[str] = []
        procs = [(n, self._procs[n]) for n in names if n in self._procs]
        for _, p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for name, p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problems.append(f"{name} (pid {p.pid}) ignored SIGTERM; killed")
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait()
            del self._procs[name]
        return problems

    def stop(self) -> None:
        """Stop everything this cluster started and remove its directory.

        Order: cancel jobs (bounded wait), SIGTERM slurmd + slurmctld, kill
        any left-over job step of ours, SIGTERM munged; each daemon gets
        :attr:`stop_timeout` seconds before SIGKILL.  Safe to call more than
        once and after a failed :meth:`start`.  Anything unusual is recorded
        in :attr:`problems`.
        """
        if self._root is None:
            return
        root = self._root
        t0 = time.monotonic()
        problems: list[str] = []
        try:
            try:
                self._cancel_jobs()
            except (OSError, subprocess.SubprocessError) as e:  # keep tearing down
                problems.append(f"cancelling jobs failed: {e}")
            # slurm daemons first (they may still talk to munged), in parallel.
            # slurmd does not stop running job steps, hence _cancel_jobs above.
            problems += self._terminate([*(self._slurmd_daemon(n) for n in self.node_names), "slurmctld"])
            problems += self._kill_leftover_steps(root)
            problems += self._terminate(["munged"])
            problems += self._terminate(list(self._procs))
        finally:
            self._unexport()
            self._root = None
            if not self.keep_dir:
                shutil.rmtree(root, ignore_errors=True)
            self.problems = problems
            self.shutdown_seconds = time.monotonic() - t0

    @staticmethod
    def _kill_leftover_steps(root: Path, grace: float = 1.0) -> list[str]:
        """SIGKILL helpers of ours that survived slurmd/slurmctld, with descendants.

        ``slurmstepd`` detaches from slurmd and outlives it (normally jobs are
        cancelled before, so there is none); ``slurmscriptd`` (forked by
        slurmctld) exits on its own shortly after slurmctld.  Whatever is left
        after ``grace`` seconds is killed.  Only processes whose environment
        points ``SLURM_CONF`` into *our* directory (i.e. spawned by our
        daemons) and the processes below them are touched, by pid.
        """
        deadline = time.monotonic() + grace
        while True:
            left = [p.pid for p in find_stray_processes(root) if p.name in ("slurmstepd", "slurmscriptd")]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(_POLL)
        if not left:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _read_proc(int(entry), "stat").decode(errors="replace")
                fields = stat.rpartition(")")[2].split()
                if len(fields) > 1:
                    children.setdefault(int(fields[1]), []).append(int(entry))
        victims: list[int] = []
        todo = list(left)
        while todo:
            pid = todo.pop()
            victims.append(pid)
            todo.extend(children.get(pid, []))
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return [f"killed left-over job step processes {victims}"]

    def pids(self) -> dict[str, int]:
        """Pids of the daemons currently managed, by name."""
        return {n: p.pid for n, p in self._procs.items()}

    def processes(self) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        """Iterate over ``(name, Popen)`` of the managed daemons."""
        yield from self._procs.items()


@contextlib.contextmanager
def netns_cluster(n: int = 3, prefix: str = "srn", **options: Any) -> Iterator[SlurmCluster]:
    """A SLURM cluster of ``n`` network-namespace hosts, one slurmd each, and no sshd anywhere.

    ``slurmctld`` and ``munged`` run here, in the root namespace; the hosts
    (``<prefix>-h1`` ...) have their own hostname, address and ``/etc/hosts``
    naming each other.  ``options`` go to :class:`SlurmCluster`.  The cluster
    is stopped before the hosts are removed, also when the block fails, and
    removing the hosts kills whatever a job left inside them.  The hosts are
    ``cluster.hosts``.
    """
    from netns_hosts import NetnsHosts

    with (
        NetnsHosts(n, prefix, sshd=False) as hosts,
        SlurmCluster(hosts=list(hosts), controller_address=hosts.gateway_address, **options) as cluster,
    ):
        cluster.netns = hosts  # type: ignore[attr-defined]
        yield cluster
