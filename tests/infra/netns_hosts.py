"""Throw-away "hosts" for tests: network namespaces, each running a real sshd.

``NetnsHosts`` builds, on this one Linux machine, a small private network of
*n* hosts that a launcher can reach over SSH exactly as it would reach real
machines::

    with NetnsHosts(n=3, prefix="pst") as hosts:
        for h in hosts:                       # pst-h1, pst-h2, pst-h3
            subprocess.run(h.ssh_argv("hostname"), check=True)
        hosts[1].cut_off()                    # simulate a network partition

Layout (``X`` is an octet chosen per run so concurrent runs do not clash)::

    root namespace                      namespace pst-X-h1 (UTS name pst-h1)
    bridge pst-X-br 10.77.X.1/24 ---- veth pst-X-h1 <-> eth0 10.77.X.2/24
                                 ---- veth pst-X-h2 <-> eth0 10.77.X.3/24 ...

* Each namespace runs its own ``/usr/sbin/sshd -D -e`` inside a private UTS
  namespace (so ``hostname`` prints ``pst-hN``) and a private mount namespace
  in which ``/etc/hosts`` is bind-mounted from a generated file, so sessions
  on one host can reach the others by name.  Nothing under /etc is modified.
* Host keys (one ed25519 key per host) and the client key pair are generated
  for the run; ``known_hosts`` pins each host's key under both its name and
  its address, and ``ssh_config`` lets ``ssh -F ssh_config pst-h1`` and
  paramiko connect with strict host-key checking.
* Every link (bridge, both ends of every veth) has a fixed MAC address
  derived from prefix, octet and host index.  When an address comes back with
  a *different* MAC while the peer still holds a neighbour (ARP) entry for it
  -- e.g. a host re-created while the bridge stays up -- new TCP connections
  stall until that entry expires (measured here: 35 s).  A bridge without a
  fixed MAC also changes its own MAC whenever ports come and go.
* The namespaces have no default route and the bridge is not connected to any
  physical interface, so all traffic stays between these namespaces and the
  root namespace's bridge address.  IPv6 address generation is switched off on
  every link, so not even link-local IPv6 chatter happens.

Teardown (``__exit__``, also after an exception, also after SIGTERM -- see
``handle_sigterm``) kills the sshd processes started here (by pid) and any
process left inside the hosts' namespaces, then deletes veths, namespaces,
bridge and the temporary directory.  If the owning process is killed hard,
the sshd listeners die with it (``PR_SET_PDEATHSIG``) and
``cleanup_stale(prefix)`` removes whatever else is left; runs that are still
alive are recognised by a ``flock`` held on ``/run/pastset-netns/*.lock`` and
never touched.

Note that sshd runs remote commands through the user's login shell, and bash
reads ``~/.bashrc`` even for non-interactive ssh commands: whatever root's
``.bashrc`` does (e.g. ``pyenv init``) costs time on every command and may
change ``PATH``, so launchers should use absolute interpreter paths.

Requires root, ``iproute2``, ``util-linux`` (unshare, nsenter, mount) and
``openssh-server`` / ``openssh-client`` (see ``install-deps.sh``).  Only the
standard library is used.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, overload

__all__ = [
    "STATE_DIR",
    "Host",
    "NetnsError",
    "NetnsHosts",
    "SigTerm",
    "cleanup_stale",
    "missing_requirements",
]

#: Lock and state files of live runs (one ``<prefix>-<octet>.lock/.json`` each).
STATE_DIR = Path("/run/pastset-netns")

SSHD = "/usr/sbin/sshd"
SSH_PORT = 22
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,5}")
_PRIVSEP_DIR = Path("/run/sshd")
_CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_PR_SET_PDEATHSIG = 1


class NetnsError(RuntimeError):
    """Setting up, using or tearing down the namespace hosts failed."""


class SigTerm(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives while hosts are up.

    It derives from ``KeyboardInterrupt`` so that pytest treats it like
    Ctrl-C: it stops the session but still runs fixture finalizers (and so
    ``NetnsHosts.__exit__``).  See ``NetnsHosts(handle_sigterm=...)``.
    """


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run a helper command with a clean environment, capturing its output."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_CLEAN_ENV,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} exited with {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _ip_batch(commands: Sequence[str], *, netns: str | None = None, force: bool = False) -> str:
    """Run several ``ip`` commands in one process (``ip -batch -``).

    Returns the error output (only non-empty when ``force`` is true; otherwise
    a failing command raises ``NetnsError``).
    """
    if not commands:
        return ""
    argv = ["ip"]
    if netns is not None:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    proc = _run(argv, input="\n".join(commands) + "\n", check=not force)
    return proc.stderr.strip() if proc.returncode else ""


def _ip_json(*args: str) -> list[dict[str, Any]]:
    """Run ``ip -j ARGS`` and return the decoded list (empty on no output)."""
    out = _run(["ip", "-j", *args]).stdout.strip()
    return json.loads(out) if out else []


def _list_links() -> set[str]:
    """Names of all links in the root network namespace."""
    return {link["ifname"] for link in _ip_json("link", "show")}


def _list_netns() -> set[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    return {ns["name"] for ns in _ip_json("netns", "list")}


def _netns_pids(netns: str) -> list[int]:
    """Pids of the processes inside a named network namespace."""
    proc = _run(["ip", "netns", "pids", netns], check=False)
    if proc.returncode != 0:
        return []
    return [int(p) for p in proc.stdout.split()]


def _used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks in use in the root namespace (addresses and routes)."""
    nets: list[ipaddress.IPv4Network] = []
    for link in _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "default")
        if dst == "default":
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    return nets


def _pid_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses
    return int(stat.rsplit(")", 1)[1].split()[19])


def _kill_pids(pids: Sequence[int], timeout: float = 3.0) -> list[int]:
    """SIGTERM ``pids``, wait (poll /proc) up to ``timeout``, then SIGKILL.

    Returns the pids that were still alive at the end.  Only for processes
    that are not our children (children must be reaped with ``wait``).
    """
    alive = [p for p in pids if _pid_start_time(p) is not None and not _is_zombie(p)]
    starts = {p: _pid_start_time(p) for p in alive}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            # a pid counts as gone once it vanished or was reused
            alive = [p for p in alive if _pid_start_time(p) == starts[p] and not _is_zombie(p)]
            if alive:
                time.sleep(0.01)
        if not alive:
            break
    return alive


def _is_zombie(pid: int) -> bool:
    """True if ``pid`` is a zombie (dead, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _mac(prefix: str, octet: int, host: int, side: int) -> str:
    """Deterministic, locally administered unicast MAC address.

    ``02:70:<prefix hash>:<octet>:<host index>:<side>``; host 0 is the bridge,
    side 1 is the root end of a veth pair and side 2 the namespace end.
    """
    tag = zlib.crc32(prefix.encode()) & 0xFF
    return f"02:70:{tag:02x}:{octet:02x}:{host:02x}:{side:02x}"


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """Open ``path`` and take a non-blocking exclusive flock; fd or None."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` with ``data`` as JSON."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _sshd_version() -> tuple[int, int]:
    """(major, minor) of the installed OpenSSH sshd, (0, 0) if unknown."""
    proc = _run([SSHD, "-V"], check=False)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", proc.stderr + proc.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _pdeathsig_preexec(parent_pid: int) -> Callable[[], None]:
    """Return a ``preexec_fn`` making the child get SIGTERM when we die.

    The setting survives the ``execve`` chain ip -> unshare -> sh -> sshd
    (none of them is set-uid).  Note that the kernel sends the signal when the
    *thread* that forked the child exits.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:  # parent died before prctl took effect
            os._exit(126)

    return preexec


def missing_requirements() -> list[str]:
    """Return human-readable reasons why ``NetnsHosts`` cannot work here.

    An empty list means: running as root on Linux with all needed programs.
    Handy for ``pytest.skip``.
    """
    missing = []
    if os.geteuid() != 0:
        missing.append("must run as root")
    for prog in (SSHD, "ssh-keygen", "ssh", "ip", "unshare", "nsenter", "mount", "hostname"):
        if shutil.which(prog, path=_CLEAN_ENV["PATH"]) is None:
            missing.append(f"{prog} not found (run tests/infra/install-deps.sh)")
    if not Path("/proc/self/ns/net").exists():
        missing.append("no network namespace support")
    return missing


# --------------------------------------------------------------------------
# hosts
# --------------------------------------------------------------------------


@dataclass(eq=False)
class Host:
    """One fake host: a network namespace with its own sshd and hostname."""

    #: Host name as seen by ``hostname`` on the host and used in ssh_config.
    name: str
    #: IPv4 address of the host (on its ``eth0``).
    address: str
    #: 1-based position of the host in its ``NetnsHosts``.
    index: int
    #: Name of the network namespace (``ip netns``), e.g. ``pst-123-h1``.
    netns: str
    #: Root-namespace end of the host's veth pair (attached to the bridge).
    veth: str
    #: ssh_config usable with ``ssh -F`` and ``paramiko.SSHConfig``.
    ssh_config: Path
    #: known_hosts file pinning every host's key by name and by address.
    known_hosts: Path
    #: Private key (ed25519, OpenSSH format) accepted by every host.
    key: Path
    #: The host's own private host key and its public line ("type base64").
    host_key: Path
    host_public_key: str
    #: sshd configuration file and sshd's stderr log for this host.
    sshd_config: Path
    log: Path
    port: int = SSH_PORT
    user: str = "root"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """Pid of this host's sshd listener, or None if it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    def command(self, cmd: Sequence[str]) -> list[str]:
        """Return an argv running ``cmd`` inside this host.

        Uses ``ip netns exec`` for the network namespace; while the sshd is
        running it also enters the sshd's UTS and mount namespaces (via
        ``nsenter``), so the command sees the host name and ``/etc/hosts`` an
        SSH session on this host would see.  The working directory is kept.
        """
        argv = ["ip", "netns", "exec", self.netns]
        pid = self.pid
        if pid is not None:
            argv += [
                "nsenter",
                f"--uts=/proc/{pid}/ns/uts",
                f"--mount=/proc/{pid}/ns/mnt",
                f"--wd={os.getcwd()}",
                "--",
            ]
        return argv + list(cmd)

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 60.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside this host and return its captured (text) output.

        Raises ``subprocess.CalledProcessError`` if ``check`` and it fails.
        """
        return subprocess.run(
            self.command(cmd),
            check=check,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
        )

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside this host in the background (``subprocess.Popen``).

        Processes still running inside the host are killed at teardown.
        """
        return subprocess.Popen(self.command(cmd), **kwargs)

    def ssh_argv(self, *remote_command: str) -> list[str]:
        """Return an OpenSSH client argv running ``remote_command`` on this host."""
        return ["ssh", "-F", str(self.ssh_config), self.name, *remote_command]

    @property
    def is_cut_off(self) -> bool:
        """True while the host is disconnected by ``cut_off``."""
        links = _ip_json("link", "show", "dev", self.veth)
        return bool(links) and "UP" not in links[0].get("flags", [])

    def cut_off(self) -> None:
        """Disconnect the host from the network (its veth goes down).

        Packets to and from it are silently dropped: established connections
        hang and new ones time out, as with a pulled cable.  The host itself
        (sshd and everything else) keeps running.  Undo with ``restore``.
        """
        _run(["ip", "link", "set", "dev", self.veth, "down"])

    def restore(self) -> None:
        """Reconnect a host disconnected with ``cut_off``."""
        _run(["ip", "link", "set", "dev", self.veth, "up"])

    def wait_ready(self, timeout: float = 10.0) -> float:
        """Wait until the host's sshd answers with an SSH banner.

        Returns the seconds waited; raises ``NetnsError`` on timeout or if
        the sshd died.
        """
        start = time.monotonic()
        _wait_ready([self], start + timeout)
        return time.monotonic() - start


def _banner_ok(address: str, port: int, timeout: float) -> bool:
    """True if an SSH server at address:port sends its identification line."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _wait_ready(hosts: Sequence[Host], deadline: float) -> None:
    """Wait (bounded by ``deadline``) until every host's sshd sends a banner."""
    pending = list(hosts)
    delay = 0.005
    while pending:
        for host in list(pending):
            if host._proc is not None and host._proc.poll() is not None:
                raise NetnsError(f"sshd of {host.name} exited with {host._proc.returncode}:\n{_tail(host.log)}")
            remaining = deadline - time.monotonic()
            if _banner_ok(host.address, host.port, max(0.05, min(1.0, remaining))):
                pending.remove(host)
        if not pending:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(h.name for h in pending)
            logs = "\n".join(f"--- {h.name}:\n{_tail(h.log)}" for h in pending)
            raise NetnsError(f"sshd not reachable on {names} before the deadline\n{logs}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tail(path: Path, lines: int = 20) -> str:
    """Last ``lines`` lines of a log file (empty string if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# the context manager
# --------------------------------------------------------------------------


class NetnsHosts(Sequence[Host]):
    """Context manager creating ``n`` namespace hosts with sshd; see module doc.

    The object is a sequence of ``Host`` (``hosts[0]`` is ``<prefix>-h1``).

    Args:
        n: number of hosts (1..200).
        prefix: 1-6 lowercase letters/digits, starting with a letter.  Host
            names are ``<prefix>-h1`` ... and every object created in the
            system is named ``<prefix>-<octet>-...``.
        octet: third octet ``X`` of the subnet ``<net_prefix>.X.0/24``;
            by default derived from the pid, moving on to the next free one.
        net_prefix: first two octets of the subnet.
        user: login user written into ssh_config (the key is authorised for
            every user sshd lets in; root is allowed by key only).
        ready_timeout: seconds to wait for all sshds to accept connections.
        die_with_parent: let the kernel SIGTERM the sshd listeners when the
            thread that created them dies (``PR_SET_PDEATHSIG``), so a hard
            kill of the test process leaves no listening sshd behind.
        handle_sigterm: if SIGTERM has its default disposition and we are in
            the main thread, turn SIGTERM into a ``SigTerm`` exception while
            the hosts exist, so ``with`` blocks and pytest finalizers run;
            a SIGTERM arriving during teardown is deferred until it is done.
        tmp_root: where to create the temporary directory (default: $TMPDIR).
        sshd: run an sshd on every host.  With ``False`` each host gets a
            plain holder process instead (``sleep infinity`` in the host's UTS
            and mount namespaces, hostname and ``/etc/hosts`` set up as with
            sshd), so daemons of one's own -- slurmd, say -- can be started
            there with ``Host.popen`` on hosts nobody can ssh into.
    """

    def __init__(
        self,
        n: int = 3,
        prefix: str = "pst",
        *,
        octet: int | None = None,
        net_prefix: str = "10.77",
        user: str = "root",
        ready_timeout: float = 15.0,
        die_with_parent: bool = True,
        handle_sigterm: bool = True,
        tmp_root: str | os.PathLike[str] | None = None,
        sshd: bool = True,
    ) -> None:
        """Validate the parameters; nothing is created before ``__enter__``."""
        if not 1 <= n <= 200:
            raise ValueError("n must be between 1 and 200")
        if not _PREFIX_RE.fullmatch(prefix):
            raise ValueError("prefix must be 1-6 lowercase letters/digits starting with a letter")
        if octet is not None and not 1 <= octet <= 254:
            raise ValueError("octet must be between 1 and 254")
        if not re.fullmatch(r"\d{1,3}\.\d{1,3}", net_prefix):
            raise ValueError("net_prefix must look like '10.77'")
        self.n = n
        self.prefix = prefix
        self.net_prefix = net_prefix
        self.user = user
        self.ready_timeout = ready_timeout
        self.die_with_parent = die_with_parent
        self.handle_sigterm = handle_sigterm
        self.tmp_root = tmp_root
        self.sshd = sshd
        self._want_octet = octet

        self.octet: int = -1
        self.network: ipaddress.IPv4Network | None = None
        #: root namespace's address on the bridge, reachable from every host
        self.gateway_address = ""
        self.bridge = ""
        self.tmpdir: Path = Path()
        self.ssh_config: Path = Path()
        self.known_hosts: Path = Path()
        self.key: Path = Path()
        self.public_key = ""
        #: /etc/hosts-format file with every host (bind-mounted as /etc/hosts on the hosts)
        self.hosts_file: Path = Path()
        self.hosts: list[Host] = []
        #: seconds taken by the last set-up and tear-down
        self.setup_seconds: float | None = None
        self.teardown_seconds: float | None = None

        self._lock_fd: int | None = None
        self._state_path: Path | None = None
        self._state: dict[str, Any] = {}
        self._entered = False
        self._closed = False
        self._prev_sigterm: Any = None
        self._sigterm_installed = False
        self._tearing_down = False
        self._sigterm_pending = False

    # ---- sequence protocol -------------------------------------------------

    @overload
    def __getitem__(self, index: int) -> Host: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Host]: ...
    def __getitem__(self, index: int | slice) -> Host | Sequence[Host]:
        """Host(s) by position (``hosts[0]`` is ``<prefix>-h1``)."""
        return self.hosts[index]

    def __len__(self) -> int:
        """Number of hosts."""
        return len(self.hosts)

    def __repr__(self) -> str:
        """Short description for test output."""
        return f"NetnsHosts(prefix={self.prefix!r}, network={self.network}, hosts={[h.name for h in self.hosts]})"

    def by_name(self, name: str) -> Host:
        """The host called ``name`` (``KeyError`` if there is none)."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def addresses(self) -> dict[str, str]:
        """Mapping host name -> IPv4 address (a stand-in for /etc/hosts)."""
        return {h.name: h.address for h in self.hosts}

    @property
    def netns_names(self) -> list[str]:
        """Names of the network namespaces created for the hosts."""
        return [h.netns for h in self.hosts]

    @property
    def sshd_pids(self) -> list[int]:
        """Pids of the sshd listeners currently running."""
        return [pid for pid in (h.pid for h in self.hosts) if pid is not None]

    # ---- context manager ---------------------------------------------------

    def __enter__(self) -> NetnsHosts:
        """Create everything and wait until every sshd accepts connections."""
        if self._entered:
            raise NetnsError("a NetnsHosts object can only be entered once")
        self._entered = True
        start = time.monotonic()
        self._install_sigterm_handler()
        try:
            self._setup()
        except BaseException:
            self._teardown(raise_errors=False)
            self._restore_sigterm_handler()
            raise
        self.setup_seconds = time.monotonic() - start
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tear everything down; errors are raised only if the block succeeded."""
        try:
            self._teardown(raise_errors=exc_type is None)
        finally:
            pending = self._sigterm_pending
            self._restore_sigterm_handler()
        if pending and exc_type is None:
            raise SigTerm("SIGTERM received during teardown")

    def close(self) -> None:
        """Tear down explicitly (idempotent); same as leaving the ``with``."""
        self.__exit__(None, None, None)

    # ---- SIGTERM -----------------------------------------------------------

    def _install_sigterm_handler(self) -> None:
        if not self.handle_sigterm or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the caller has its own policy; respect it
        self._prev_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._sigterm_installed = True

    def _restore_sigterm_handler(self) -> None:
        if self._sigterm_installed:
            signal.signal(signal.SIGTERM, self._prev_sigterm)
            self._sigterm_installed = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self._tearing_down:
            self._sigterm_pending = True
            return
        raise SigTerm(f"signal {signum} (SIGTERM) received")

    # ---- set-up ------------------------------------------------------------

    def _setup(self) -> None:
        if missing := missing_requirements():
            raise NetnsError("; ".join(missing))
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        sshd_version = _sshd_version()

        # Allocate a subnet and create the bridge while holding the global lock,
        # so that concurrent runs cannot pick the same subnet.
        with _flocked(STATE_DIR / "alloc.lock"):
            self._allocate()
            self._create_network()

        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-{self.octet}-netns-", dir=self.tmp_root))
        if re.search(r"\s", str(self.tmpdir)):
            raise NetnsError(f"temporary directory {self.tmpdir} must not contain whitespace")
        self._state["tmpdir"] = str(self.tmpdir)
        self._save_state()
        self._write_files(sshd_version)
        if self.sshd:
            self._start_sshds()
            _wait_ready(self.hosts, time.monotonic() + self.ready_timeout)
        else:
            self._start_holders(time.monotonic() + self.ready_timeout)

    def _allocate(self) -> None:
        """Pick a free /24 and claim it with a per-run lock file."""
        used = [net for net in _used_networks() if net.prefixlen >= 16]
        links = _list_links()
        namespaces = _list_netns()
        if self._want_octet is not None:
            candidates = [self._want_octet]
        else:
            first = 10 + os.getpid() % 240
            candidates = [10 + (first - 10 + k) % 240 for k in range(240)]
        for octet in candidates:
            net = ipaddress.IPv4Network(f"{self.net_prefix}.{octet}.0/24")
            tag = f"{self.prefix}-{octet}-"
            if any(net.overlaps(u) for u in used):
                continue
            if any(name.startswith(tag) for name in links | namespaces):
                continue  # leftovers of a crashed run: see cleanup_stale()
            fd = _try_lock(STATE_DIR / f"{self.prefix}-{octet}.lock")
            if fd is None:
                continue
            self._lock_fd = fd
            self.octet = octet
            self.network = net
            self._state_path = STATE_DIR / f"{self.prefix}-{octet}.json"
            self._state = {"owner": os.getpid(), "tmpdir": None, "sshd": []}
            self._save_state()
            return
        raise NetnsError(
            f"no free subnet {self.net_prefix}.X.0/24 for prefix {self.prefix!r}"
            + (f" (octet {self._want_octet} requested)" if self._want_octet else "")
        )

    def _create_network(self) -> None:
        """Bridge, namespaces, veth pairs and addresses (fixed MACs)."""
        assert self.network is not None
        p, x = self.prefix, self.octet
        addrs = list(self.network.hosts())
        self.gateway_address = str(addrs[0])
        self.bridge = f"{p}-{x}-br"
        cmds = [
            f"link add {self.bridge} address {_mac(p, x, 0, 0)} type bridge forward_delay 0 stp_state 0",
            f"link set dev {self.bridge} addrgenmode none",
            f"addr add {self.gateway_address}/24 dev {self.bridge}",
            f"link set dev {self.bridge} up",
        ]
        per_ns: dict[str, list[str]] = {}
        for i in range(1, self.n + 1):
            ns = f"{p}-{x}-h{i}"
            address = str(addrs[i])
            cmds += [
                f"netns add {ns}",
                f"link add {ns} address {_mac(p, x, i, 1)} type veth"
                f" peer name eth0 address {_mac(p, x, i, 2)} netns {ns}",
                f"link set dev {ns} master {self.bridge} addrgenmode none up",
            ]
            per_ns[ns] = [
                "link set dev lo up",
                "link set dev eth0 addrgenmode none",
                f"addr add {address}/24 dev eth0",
                "link set dev eth0 up",
            ]
            self.hosts.append(
                Host(
                    name=f"{p}-h{i}",
                    address=address,
                    index=i,
                    netns=ns,
                    veth=ns,
                    ssh_config=Path(),
                    known_hosts=Path(),
                    key=Path(),
                    host_key=Path(),
                    host_public_key="",
                    sshd_config=Path(),
                    log=Path(),
                    user=self.user,
                )
            )
        _ip_batch(cmds)
        for ns, ns_cmds in per_ns.items():
            _ip_batch(ns_cmds, netns=ns)

    def _write_files(self, sshd_version: tuple[int, int]) -> None:
        """Generate keys and write sshd configs, known_hosts, ssh_config, hosts."""
        d = self.tmpdir
        self.key = d / "id_ed25519"
        self.known_hosts = d / "known_hosts"
        self.ssh_config = d / "ssh_config"
        self.hosts_file = d / "hosts"
        authorized_keys = d / "authorized_keys"
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        _run([*keygen, "-C", f"{self.prefix}-{self.octet}-client", "-f", str(self.key)])
        self.public_key = (d / "id_ed25519.pub").read_text().strip()
        authorized_keys.write_text(self.public_key + "\n")

        self.hosts_file.write_text(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{self.gateway_address}\t{self.prefix}-gw\n" + "".join(f"{h.address}\t{h.name}\n" for h in self.hosts)
        )

        known_lines = []
        config_blocks = [f"# generated by netns_hosts.py for {self.prefix}-{self.octet} ({self.network})\n"]
        for h in self.hosts:
            hd = d / h.name
            hd.mkdir()
            h.host_key = hd / "ssh_host_ed25519_key"
            _run([*keygen, "-C", h.name, "-f", str(h.host_key)])
            ktype, kdata = (hd / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            h.host_public_key = f"{ktype} {kdata}"
            known_lines.append(f"{h.name},{h.address} {h.host_public_key}\n")
            h.sshd_config = hd / "sshd_config"
            h.log = hd / "sshd.log"
            h.key, h.known_hosts, h.ssh_config = self.key, self.known_hosts, self.ssh_config
            h.sshd_config.write_text(self._sshd_config_text(h, hd, authorized_keys, sshd_version))
            config_blocks.append(
                f"\nHost {h.name} {h.address}\n"
                f"    HostName {h.address}\n"
                f"    Port {h.port}\n"
                f"    User {h.user}\n"
                f"    IdentityFile {self.key}\n"
                "    IdentitiesOnly yes\n"
                "    IdentityAgent none\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                "    UpdateHostKeys no\n"
                "    CheckHostIP no\n"
                "    BatchMode yes\n"
                "    PasswordAuthentication no\n"
                "    KbdInteractiveAuthentication no\n"
                "    ControlMaster no\n"
                "    ControlPath none\n"
                "    ConnectTimeout 10\n"
                "    LogLevel ERROR\n"
            )
        self.known_hosts.write_text("".join(known_lines))
        self.ssh_config.write_text("".join(config_blocks))

    def _sshd_config_text(self, host: Host, hd: Path, authorized_keys: Path, sshd_version: tuple[int, int]) -> str:
        lines = [
            f"# sshd for {host.name} in netns {host.netns}",
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {host.host_key}",
            f"PidFile {hd / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "LoginGraceTime 30",
            "LogLevel INFO",
            "Subsystem sftp internal-sftp",
        ]
        if sshd_version >= (9, 8):
            # readiness probes disconnect without authenticating; newer sshd
            # would penalise (temporarily refuse) the bridge address for that
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    def _start_sshds(self) -> None:
        preexec = _pdeathsig_preexec(os.getpid()) if self.die_with_parent else None
        script = 'hostname "$1" && mount --bind "$2" /etc/hosts && exec "$3" -D -e -f "$4"'
        for h in self.hosts:
            enter = ["ip", "netns", "exec", h.netns, "unshare", "--uts", "--"]
            with open(h.log, "ab") as log:
                h._proc = subprocess.Popen(
                    [*enter, "sh", "-c", script, "sh", h.name, str(self.hosts_file), SSHD, str(h.sshd_config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_CLEAN_ENV,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            self._state["sshd"].append([h._proc.pid, _pid_start_time(h._proc.pid)])
            self._save_state()

    def _start_holders(self, deadline: float) -> None:
        """Per host: a process that only holds its UTS and mount namespaces (no sshd)."""
        preexec = _pdeathsig_preexec(os.getpid()) if self.die_with_parent else None
        script = 'hostname "$1" && mount --bind "$2" /etc/hosts && echo ready && exec sleep infinity'
        for h in self.hosts:
            # Not "ip netns exec": that remounts /sys for the namespace, which hides
            # /sys/fs/cgroup from what runs there (slurmd needs it).
            enter = ["unshare", "--uts", "--mount", "--propagation", "private", "--"]
            enter += ["nsenter", f"--net=/run/netns/{h.netns}", "--"]
            with open(h.log, "ab") as log:
                h._proc = subprocess.Popen(
                    [*enter, "sh", "-c", script, "sh", h.name, str(self.hosts_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=_CLEAN_ENV,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            self._state["sshd"].append([h._proc.pid, _pid_start_time(h._proc.pid)])
            self._save_state()
        for h in self.hosts:
            assert h._proc is not None and h._proc.stdout is not None
            ready, _, _ = select.select([h._proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = h._proc.stdout.readline() if ready else b""
            if line.strip() != b"ready":
                raise NetnsError(f"namespace holder of {h.name} did not start:\n{_tail(h.log)}")

    def _save_state(self) -> None:
        if self._state_path is not None:
            state = dict(self._state)
            state["netns"] = [h.netns for h in self.hosts]
            state["links"] = [h.veth for h in self.hosts] + ([self.bridge] if self.bridge else [])
            _write_json(self._state_path, state)

    # ---- tear-down ---------------------------------------------------------

    def _teardown(self, *, raise_errors: bool) -> None:
        if self._closed:
            return
        self._closed = True
        start = time.monotonic()
        self._tearing_down = True
        errors: list[str] = []
        try:
            # 1. our sshd listeners: our children, killed and reaped by pid
            procs = [h._proc for h in self.hosts if h._proc is not None]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
                if proc.stdout is not None:
                    proc.stdout.close()
            # 2. whatever is left inside our namespaces (ssh sessions, popen())
            leftovers = [pid for h in self.hosts for pid in _netns_pids(h.netns)]
            if stuck := _kill_pids(leftovers):
                errors.append(f"processes would not die: {stuck}")
            # 3. links and namespaces.  Deleting the root end of a veth pair
            # deletes both ends synchronously; ``ip netns del`` alone would
            # leave the kernel to destroy them asynchronously.
            existing_links = _list_links() if self.hosts or self.bridge else set()
            cmds = [f"link del dev {h.veth}" for h in self.hosts if h.veth in existing_links]
            existing_ns = _list_netns()
            cmds += [f"netns del {h.netns}" for h in self.hosts if h.netns in existing_ns]
            if self.bridge and self.bridge in existing_links:
                cmds.append(f"link del dev {self.bridge}")
            if err := _ip_batch(cmds, force=True):
                errors.append(err)
            left = (_list_links() | _list_netns()) & (
                {h.veth for h in self.hosts} | {h.netns for h in self.hosts} | {self.bridge}
            )
            if left:
                errors.append(f"could not delete: {sorted(left)}")
            # 4. files
            if self.tmpdir != Path() and self.tmpdir.exists():
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            if self._state_path is not None and not errors:
                self._state_path.unlink(missing_ok=True)
                (STATE_DIR / f"{self.prefix}-{self.octet}.lock").unlink(missing_ok=True)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._tearing_down = False
            self.teardown_seconds = time.monotonic() - start
        if errors and raise_errors:
            raise NetnsError("teardown incomplete: " + "; ".join(errors))


# --------------------------------------------------------------------------
# crash recovery
# --------------------------------------------------------------------------


def cleanup_stale(prefix: str = "pst") -> list[str]:
    """Remove what crashed ``NetnsHosts(prefix=prefix)`` runs left behind.

    Only objects named ``<prefix>-<octet>-...`` are considered, and only for
    runs whose owner is dead (its ``flock`` on ``STATE_DIR/<prefix>-<octet>.lock``
    is free); live runs, including concurrent ones, are left alone.  For a
    stale run this kills the processes inside its namespaces and its recorded
    sshd pids (only if pid *and* start time still match), deletes its veths,
    namespaces and bridge, its temporary directory and its state files.

    Returns a list of descriptions of what was removed.
    """
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError("invalid prefix")
    pattern = re.compile(rf"{re.escape(prefix)}-(\d{{1,3}})-(?:br|h\d+)")
    removed: list[str] = []
    if not STATE_DIR.exists() and not any(pattern.fullmatch(name) for name in _list_links() | _list_netns()):
        return removed
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _flocked(STATE_DIR / "alloc.lock"):
        links = {name for name in _list_links() if pattern.fullmatch(name)}
        namespaces = {name for name in _list_netns() if pattern.fullmatch(name)}
        octets = {int(m.group(1)) for name in links | namespaces if (m := pattern.fullmatch(name))}
        state_re = re.compile(rf"{re.escape(prefix)}-(\d{{1,3}})\.(?:json|lock)")
        octets |= {int(m.group(1)) for p in STATE_DIR.iterdir() if (m := state_re.fullmatch(p.name))}
        for octet in sorted(octets):
            lock_path = STATE_DIR / f"{prefix}-{octet}.lock"
            fd = _try_lock(lock_path)
            if fd is None:
                continue  # owner alive
            try:
                removed += _cleanup_run(prefix, octet, links, namespaces)
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)
    return removed


def _cleanup_run(prefix: str, octet: int, links: set[str], namespaces: set[str]) -> list[str]:
    """Remove one stale run (caller holds its lock and the allocation lock)."""
    removed: list[str] = []
    tag = f"{prefix}-{octet}-"
    state_path = STATE_DIR / f"{prefix}-{octet}.json"
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text())
    my_ns = sorted(ns for ns in namespaces if ns.startswith(tag))
    pids = [pid for ns in my_ns for pid in _netns_pids(ns)]
    for pid, start in state.get("sshd", []):
        if start is not None and _pid_start_time(pid) == start and not _is_zombie(pid) and pid not in pids:
            pids.append(pid)
    if pids:
        _kill_pids(pids)
        removed.append(f"processes {sorted(pids)}")
    my_links = sorted(link for link in links if link.startswith(tag))
    cmds = [f"link del dev {link}" for link in my_links if not link.endswith("-br")]
    cmds += [f"netns del {ns}" for ns in my_ns]
    cmds += [f"link del dev {link}" for link in my_links if link.endswith("-br")]
    _ip_batch(cmds, force=True)
    removed += [f"link {link}" for link in my_links] + [f"netns {ns}" for ns in my_ns]
    tmpdir = state.get("tmpdir")
    if tmpdir and Path(tmpdir).name.startswith(f"{tag}netns-") and Path(tmpdir).is_dir():
        shutil.rmtree(tmpdir, ignore_errors=True)
        removed.append(f"dir {tmpdir}")
    if state_path.exists():
        state_path.unlink()
        removed.append(f"state {state_path}")
    return removed
