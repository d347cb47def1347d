"""The one settings object: internal defaults < ini files < environment.

Every PS* setting of SEMANTICS.md is read here and nowhere else.  Values are
typed; an invalid one falls back to its default with a warning that names the
setting and the bad value.  PSCONFHELP names a Python script executed (in this
process, so it can set ``os.environ``) just before the environment is read, the
hook batch systems use to hand over their node list.  The run's own wiring
(where the name server is, the run's name, the task a process serves) travels
in PSNS, PSRUN and PSTASK, set by pypsrun for the processes it starts.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import logging
import os
import runpy
import socket
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from pastset.errors import ConfigurationError

__all__ = [
    "PASSED_ON",
    "SECRETS",
    "SETTINGS_HELP",
    "SecretFilter",
    "Settings",
    "Wiring",
    "adopt_environment",
    "config_paths",
    "configure_logging",
    "interface_addresses",
    "is_this_host",
    "this_host_names",
]

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "warning", "error", "critical")


def config_paths() -> list[Path]:
    """Configuration files searched, lowest priority first."""
    site = Path(platformdirs.site_config_dir("pastset")) / "pastset.conf"
    user = Path(platformdirs.user_config_dir("pastset")) / "pastset.conf"
    return [Path("/etc/pypastset.conf"), site, Path("~/.pypastset.conf").expanduser(), user]


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value

    return parse


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with the empty text meaning "unset" (None)."""

    def optional(text: str) -> Any:
        return None if not text else parse(text)

    return optional


def _level(text: str) -> str:
    if text.lower() not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)}")
    return text.lower()


def _text(text: str) -> str:
    return text


def _yes_no(text: str) -> bool:
    if text.lower() in ("1", "yes", "true", "on"):
        return True
    if text.lower() in ("", "0", "no", "false", "off"):
        return False
    raise ValueError("must be yes or no")


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(text: str) -> int:
    """A size such as 1073741824, 512M or 1G (binary units; a trailing B or iB is allowed)."""
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    number = value[: len(value) - len(unit)].strip()
    try:
        size = int(float(number) * _UNITS[unit])
    except (ValueError, OverflowError):
        raise ValueError("must be a size in bytes such as 1G, 512M or 1073741824") from None
    if size < 1 << 20:
        raise ValueError("must be at least 1M")
    return size


def _stall(text: str) -> str:
    if text.lower() not in ("stop", "report"):
        raise ValueError("must be stop or report")
    return text.lower()


def _web(text: str) -> str:
    if text:
        if not text.rpartition(":")[2].isdigit():
            raise ValueError("must be PORT or HOST:PORT")
    return text


def _channel(text: str) -> str:
    value = text.strip().lower() or "auto"
    if value in ("auto", "off") or (value.isdigit() and 0 < int(value) < 65536):
        return value
    raise ValueError("must be auto, off or a TCP port number")


def _launch(text: str) -> str:
    value = text.strip().lower() or "auto"
    if value not in ("auto", "ssh", "srun", "pbsdsh", "local"):
        raise ValueError("must be auto, ssh, srun, pbsdsh or local")
    return value


def _store(text: str) -> str:
    text = text.strip()
    if text:
        scheme, sep, _ = text.partition("://")
        if not sep or scheme.lower() not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
            raise ValueError(
                "must be empty (the built-in server), redis://HOST:PORT[/DB], rediss://HOST:PORT, "
                "or redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
    return text


def _ns(text: str) -> str:
    if text:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be HOST:PORT")
    return text


#: name -> (parser, default, meaning); the order is the order -h prints.
SPEC: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "PSBIN": (_text, ".", "where applications and X-functions are looked up (dirs joined by ':')"),
    "PSROOT": (_text, "", "the installation (default: the installed package)"),
    "PSMASTER": (_text, "", "host for the server side (empty: this host)"),
    "PSHOSTS": (_text, "", "hosts file, one host a line (empty: only this host)"),
    "PSPROCS": (_int_at_least(0), "1", "clients to launch, in hosts-file order"),
    "PSLAUNCH": (
        _launch,
        "auto",
        "how clients start: auto (srun in a SLURM job, pbsdsh in a PBS job, else ssh), ssh, srun, pbsdsh or local",
    ),
    "PSSSH": (_text, "ssh", "ssh command used to reach hosts"),
    "PSSSHACCEPT": (_yes_no, "no", "accept unknown SSH host keys (only for throwaway test clusters)"),
    "PSPYTHON": (_text, "python", "python command on the nodes (locally: this Python)"),
    "PSPKILL": (_text, "pkill -9 -f", "kill-by-name command (kept for compatibility; unused)"),
    "PSWAITPROCS": (
        _optional(_int_at_least(0)),
        "",
        "clients to register before the app starts (default PSPROCS)",
    ),
    "PSLOGPATH": (_text, "", "log file (empty: no log file)"),
    "PSLOGLEVEL": (_level, "warning", "debug, info, warning, error or critical"),
    "PSCONFHELP": (_text, "", "configuration helper script run before the environment is read"),
    "PSSLOTS": (_int_at_least(1), "1", "spawned tasks one client runs at once"),
    "PSPROGRESS": (_yes_no, "no", "pypsrun shows a live progress line on a terminal's stderr"),
    "PSWEB": (_web, "", "serve a status page: PORT or HOST:PORT (loopback unless a host is given)"),
    "PSDEADTIME": (_seconds, "6", "seconds without a heartbeat before a client counts as dead"),
    "PSCHANNEL": (
        _channel,
        "auto",
        "element operations' direct channel: auto (a free port), a fixed PORT, or off (all through Pyro5)",
    ),
    "PSMAXINFLIGHT": (
        _bytes,
        "1G",
        "server: bytes of requests and replies held in flight (also the largest request); past it, reading waits",
    ),
    "PSSTALLGRACE": (
        _seconds,
        "2",
        "seconds everything must stay blocked and unchanged before pypsrun reports that the run can never progress",
    ),
    "PSSTALL": (_stall, "stop", "a run that can never progress: stop (report, exit status 3) or report (keep waiting)"),
    "PSFAILFAST": (_yes_no, "no", "the first spawned task that fails ends the run, showing its traceback (MPI_Abort)"),
    "PSSTRICT": (_yes_no, "no", "moves must be tuples of the template's length (a course's strict mode)"),
    "PSJOURNAL": (_text, "", "directory where the server journals every change, to recover after a crash"),
    "PSJOURNALSYNC": (_yes_no, "no", "fsync each journal record (survives power loss; much slower)"),
    "PSREPORT": (_text, "", "write an HTML report of the run (timeline, load balance) to this file when it ends"),
    "PSSTORE": (
        _store,
        "",
        "where elements live: empty (the built-in server), redis://HOST:PORT[/DB], rediss://..., "
        "or redis+cluster://HOST:PORT[,HOST:PORT...] (user and password in the URL; keep it off command lines)",
    ),
    "PSSTOREKEEP": (_yes_no, "no", "keep a run's keys in the Redis store when the run ends"),
    "PSSECRET": (_text, "", "the run's secret (made by pypsrun, handed on privately; never shown)"),
    "PSNS": (_ns, "", "name server of the current run as HOST:PORT (set by pypsrun)"),
    "PSRUN": (_text, "", "name of the current run (set by pypsrun)"),
    "PSTASK": (_text, "", "id of the spawned task this process runs (set by clients)"),
}


def _default(name: str) -> Any:
    """The typed default of setting ``name``, parsed from its text in SPEC (the one place defaults are written)."""
    parse, text, _ = SPEC[name]
    return parse(text)


@dataclass(frozen=True)
class Settings:
    """Typed settings of a pastset process, read-only once loaded.  Build with :meth:`Settings.load`.

    What a run wires up as it starts (its id, secret, name server, effective
    PSBIN) is not a setting: it travels as a :class:`Wiring`.
    """

    PSBIN: str = _default("PSBIN")
    PSROOT: str = _default("PSROOT")
    PSMASTER: str = _default("PSMASTER")
    PSHOSTS: str = _default("PSHOSTS")
    PSPROCS: int = _default("PSPROCS")
    PSLAUNCH: str = _default("PSLAUNCH")
    PSSSH: str = _default("PSSSH")
    PSSSHACCEPT: bool = _default("PSSSHACCEPT")
    PSPYTHON: str = _default("PSPYTHON")
    PSPKILL: str = _default("PSPKILL")
    PSWAITPROCS: int | None = _default("PSWAITPROCS")
    PSLOGPATH: str = _default("PSLOGPATH")
    PSLOGLEVEL: str = _default("PSLOGLEVEL")
    PSCONFHELP: str = _default("PSCONFHELP")
    PSSLOTS: int = _default("PSSLOTS")
    PSPROGRESS: bool = _default("PSPROGRESS")
    PSWEB: str = _default("PSWEB")
    PSDEADTIME: float = _default("PSDEADTIME")
    PSCHANNEL: str = _default("PSCHANNEL")
    PSMAXINFLIGHT: int = _default("PSMAXINFLIGHT")
    PSSTALLGRACE: float = _default("PSSTALLGRACE")
    PSSTALL: str = _default("PSSTALL")
    PSFAILFAST: bool = _default("PSFAILFAST")
    PSSTRICT: bool = _default("PSSTRICT")
    PSJOURNAL: str = _default("PSJOURNAL")
    PSJOURNALSYNC: bool = _default("PSJOURNALSYNC")
    PSREPORT: str = _default("PSREPORT")
    PSSTORE: str = _default("PSSTORE")
    PSSTOREKEEP: bool = _default("PSSTOREKEEP")
    PSSECRET: str = _default("PSSECRET")
    PSNS: str = _default("PSNS")
    PSRUN: str = _default("PSRUN")
    PSTASK: str = _default("PSTASK")
    #: where each value came from: "default", a file path, or "environment"
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: problems met while loading (also logged as warnings)
    problems: list[str] = field(default_factory=list, repr=False, compare=False)
    #: the files that were looked for, and whether each was read
    searched: list[tuple[Path, bool]] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def load(
        cls,
        environ: MutableMapping[str, str] | None = None,
        files: list[Path] | None = None,
        run_helper: bool = True,
    ) -> Settings:
        """Read defaults, then ini files, then run PSCONFHELP, then the environment."""
        env = os.environ if environ is None else environ
        self = cls()
        assign = object.__setattr__  # frozen for everyone else: this is where values are set
        raw: dict[str, tuple[str, str]] = {}
        for path in config_paths() if files is None else files:
            parser = configparser.ConfigParser(interpolation=None)
            parser.optionxform = str  # type: ignore[assignment,method-assign]
            try:
                read = bool(parser.read(path))
            except configparser.Error as err:
                self._problem(f"configuration file {path} is malformed ({err}); it was ignored")
                read = False
            self.searched.append((path, read))
            if read:
                for key, value in parser.defaults().items():
                    if key.upper() in SPEC:
                        raw[key.upper()] = (value, str(path))
                    else:
                        self._unknown(key, f"configuration file {path}")
        helper = env.get("PSCONFHELP", raw.get("PSCONFHELP", ("", ""))[0])
        if run_helper and helper:
            self._run_helper(helper, env)
        for key in SPEC:
            if key in env:
                raw[key] = (env[key], "environment")
        for key in sorted(env):
            if key.startswith("PS") and key not in SPEC and not key[2:].isdigit():  # PS1, PS2, PS4: the shell's
                self._unknown(key, "the environment")
        for key, (text, source) in raw.items():
            parse, default, _ = SPEC[key]
            text = text.strip()
            try:
                value = parse(text)
            except ValueError as err:
                shown = "(the value, not shown: it may hold a password)" if key == "PSSTORE" else repr(text)
                self._problem(f"{key}={shown} from {source} is invalid ({err}); using the default {default!r}")
                continue
            assign(self, key, value)
            self.sources[key] = source
        return self

    def _unknown(self, key: str, source: str) -> None:
        """Warn about a setting name pastset does not know, naming the closest one it does."""
        close = difflib.get_close_matches(key.upper(), SPEC, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "run with -h to see the settings"
        self._problem(f"unknown setting {key} in {source} is ignored; {hint}")

    def _problem(self, message: str) -> None:
        self.problems.append(message)
        log.warning("%s", message)

    def _run_helper(self, helper: str, env: MutableMapping[str, str]) -> None:
        from pastset.confhelp import BUILTIN

        if helper in BUILTIN:
            BUILTIN[helper](env)
            return
        path = Path(helper).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"PSCONFHELP={helper!r}: no such script; use 'slurm', 'pbs' or the path of a Python "
                "script that sets PSHOSTS/PSPROCS, or unset it"
            )
        try:
            runpy.run_path(str(path), run_name="__pastset_confhelp__")
        except Exception as err:
            raise ConfigurationError(f"PSCONFHELP script {path} failed: {type(err).__name__}: {err}") from err
        if env is not os.environ:  # a helper writes os.environ; tests may pass their own mapping
            for key in SPEC:
                if key in os.environ:
                    env.setdefault(key, os.environ[key])

    # ---------------------------------------------------------------- derived
    @property
    def waitprocs(self) -> int:
        """Clients to wait for: PSWAITPROCS, or PSPROCS when unset."""
        return self.PSPROCS if self.PSWAITPROCS is None else self.PSWAITPROCS

    @property
    def psbin(self) -> list[str]:
        """PSBIN as a list of directories."""
        return [p for p in self.PSBIN.split(os.pathsep) if p] or ["."]

    def ns_address(self) -> tuple[str, int]:
        """The run's name server as (host, port), or ConfigurationError if unknown."""
        return Wiring.of(self).ns_address()

    def child_environment(
        self, wiring: Wiring | None = None, base: Mapping[str, str] | None = None, remote: bool = False
    ) -> dict[str, str]:
        """The environment of a child process: ``base`` (this process's environment), the
        PS* settings that differ from their defaults, and the run's ``wiring``.

        Defaults are left out so that a child applies its own (a default PSPYTHON
        means "the interpreter running pastset" there too).  For a process on
        another host (``remote``) only search paths, locale and PYRO_* variables of
        this environment are passed on, as pyPastSet did.
        """
        source = os.environ if base is None else base
        if remote:
            source = {k: v for k, v in source.items() if k in PASSED_ON or k.startswith("PYRO_")}
        env = {k: v for k, v in source.items() if k not in SPEC}
        defaults = Settings()
        for f in fields(self):
            if f.name in SPEC:
                value = getattr(self, f.name)
                if value != getattr(defaults, f.name) or self.sources.get(f.name, "default") != "default":
                    env[f.name] = "" if value is None else str(value)
        if wiring is not None:
            env.update(wiring.environment())
        return env

    def describe(self) -> str:
        """The settings, where each came from, and the files searched (for -h)."""
        lines = ["settings (defaults < ini files [DEFAULT] < environment):"]
        for key, (_, _default, meaning) in SPEC.items():
            value = getattr(self, key)
            shown = "" if value is None else str(value)
            if key == "PSSECRET" and shown:
                shown = "(set)"
            if key == "PSSTORE" and "@" in shown:
                scheme, _, rest = shown.partition("://")
                shown = f"{scheme}://(credentials)@{rest.rpartition('@')[2]}"
            lines.append(f"  {key:<12} = {shown!r:<24} [{self.sources.get(key, 'default')}] {meaning}")
        lines.append("configuration files searched (lowest priority first):")
        for path, read in self.searched or [(p, p.is_file()) for p in config_paths()]:
            lines.append(f"  {path}{'  (read)' if read else '  (not found)'}")
        lines.append("PYRO_* variables pass through to Pyro5 (ports, hosts, ...).")
        return "\n".join(lines)


#: What reaches processes on other hosts from this environment (beside the PS* settings).
PASSED_ON = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class Wiring:
    """How the processes of one run find each other: set up by the run as it starts.

    pypsrun makes the run id and the secret, learns the name server's address
    once the server listens, and hands all of it to the processes it starts
    through their environment (PSRUN, PSSECRET, PSNS, PSBIN), where
    :meth:`of` reads it back.  It is a value the run owns and passes on, never
    written into anyone's :class:`Settings`.
    """

    run: str = ""
    secret: str = ""
    #: the run's name server as HOST:PORT ("" until it listens)
    ns: str = ""
    #: the spawned task a process serves ("" for the app and the run's own processes)
    task: str = ""
    psbin: tuple[str, ...] = (".",)

    @classmethod
    def of(cls, settings: Settings) -> Wiring:
        """The wiring this process was started with (from its settings)."""
        return cls(settings.PSRUN, settings.PSSECRET, settings.PSNS, settings.PSTASK, tuple(settings.psbin))

    def environment(self) -> dict[str, str]:
        """The PS* variables that carry this wiring to a child process (unset parts left out)."""
        values = {"PSRUN": self.run, "PSSECRET": self.secret, "PSNS": self.ns, "PSTASK": self.task}
        env = {k: v for k, v in values.items() if v}
        env["PSBIN"] = os.pathsep.join(self.psbin)
        return env

    def ns_address(self) -> tuple[str, int]:
        """The run's name server as (host, port), or ConfigurationError if unknown."""
        if not self.ns:
            raise ConfigurationError(
                "no PastSet run to connect to: PSNS is not set. Start your program with "
                "'pypsrun APP' (which sets PSNS and PSRUN), or set PSNS=HOST:PORT and PSRUN=NAME "
                "of a running pypsserver"
            )
        host, _, port = self.ns.rpartition(":")
        return host, int(port)


def adopt_environment(values: Mapping[str, str]) -> None:
    """Make ``values`` part of this process's environment (a remote start receives it over SSH)."""
    os.environ.update({str(k): str(v) for k, v in values.items()})


def batch_environment() -> dict[str, str]:
    """This process's batch-system variables (SLURM_*, PBS_*): the job's nodes, tasks and this task's place."""
    return {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "SLURMD_", "PBS_")) or k == "PSCLIENTNUMBER"}


SETTINGS_HELP = "Run with -h to see the settings, their sources and the files searched."


def this_host_names() -> set[str]:
    """Names and addresses by which this machine knows itself."""
    names = {"", "localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    try:
        host, aliases, addresses = socket.gethostbyname_ex(socket.gethostname())
        names.update([host, *aliases, *addresses])
    except OSError:
        pass
    return {n.lower() for n in names}


class SecretFilter(logging.Filter):
    """Replaces the run's secret in every log record with ``(secret)``.

    Installed on every handler by :func:`configure_logging`, so no line a
    process writes (its own, a library's, the status page's access log, a
    traceback) carries the secret to stderr or PSLOGPATH.  It reads the secret
    from the settings object (PSSECRET) when a record passes; pypsrun, which
    makes the run's secret after logging is set up, hands it over with
    :meth:`add`.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.extra: set[str] = set()

    def add(self, secret: str) -> None:
        """Scrub ``secret`` too."""
        if secret:
            self.extra.add(secret)

    def secrets(self) -> list[str]:
        """The secrets to scrub, longest first, with their URL-quoted forms."""
        from urllib.parse import quote

        found = set(self.extra)
        if self.settings is not None and self.settings.PSSECRET:
            found.add(self.settings.PSSECRET)
        found |= {quote(s, safe="") for s in found}
        return sorted((s for s in found if s), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in self.secrets():
            text = text.replace(secret, "(secret)")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the message, its arguments and any traceback; never drop a record."""
        secrets = self.secrets()
        if not secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


#: the filter the last :func:`configure_logging` installed (secrets can be added to it)
SECRETS = SecretFilter()


def private_log_file(path: str) -> logging.FileHandler:
    """A handler appending to ``path``, which is created (or narrowed to) mode 0600: logs are private."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return logging.FileHandler(path)


def interface_addresses() -> set[str]:
    """Every IP address configured on this machine's interfaces (in this network namespace).

    Read from ``/proc/net/fib_trie`` (IPv4 addresses marked ``host LOCAL``) and
    ``/proc/net/if_inet6``, so no extra package is needed; empty where /proc
    does not have them (then :func:`is_this_host` tries to bind the address).
    """
    found: set[str] = set()
    try:
        previous = ""
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|-- "):
                previous = text[4:]
            elif text == "/32 host LOCAL" and previous:
                found.add(previous)
    except OSError:
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            word = line.split()[0] if line.split() else ""
            if len(word) == 32:
                found.add(ipaddress.IPv6Address(int(word, 16)).compressed)
    except (OSError, ValueError):
        pass
    return found


def _bindable(address: str) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def is_this_host(host: str, names: set[str] | None = None, addresses: set[str] | None = None) -> bool:
    """True if ``host`` (a name or an address) names this machine, by any of its addresses.

    A name counts if it is one this machine knows itself by, or if any address
    it resolves to is configured on one of this machine's interfaces (a head
    node named by its cluster address, ``PSMASTER=10.1.0.1``, is local even if
    ``gethostbyname_ex(hostname)`` says nothing about that address).
    """
    host = host.strip().strip("[]").lower()
    if host in (this_host_names() if names is None else names):
        return True
    try:
        infos = socket.getaddrinfo(host.partition("%")[0], None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    mine = interface_addresses() if addresses is None else addresses
    for info in infos:
        address = str(info[4][0]).partition("%")[0]
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            continue
        if parsed.compressed in mine:
            return True
        if not mine and not parsed.is_unspecified and _bindable(address):  # no /proc: binding tells
            return True
    return False


def configure_logging(settings: Settings, name: str) -> None:
    """Set up ``logging`` for a command from PSLOGLEVEL and PSLOGPATH.

    Every handler gets the :class:`SecretFilter` for ``settings``, and a log
    file is created readable by this user only.
    """
    level = getattr(logging, settings.PSLOGLEVEL.upper(), logging.WARNING)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    problem = ""
    if settings.PSLOGPATH:
        try:
            handlers.append(private_log_file(settings.PSLOGPATH))
        except OSError as err:
            problem = f"PSLOGPATH={settings.PSLOGPATH!r} cannot be opened ({err}); logging to stderr only"
    SECRETS.settings = settings
    for handler in handlers:
        handler.addFilter(SECRETS)
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    if problem:
        log.warning("%s", problem)
    # Pyro5 and paramiko report connection trouble themselves; ours says it better.
    for noisy in ("Pyro5", "paramiko"):
        logging.getLogger(noisy).setLevel(level if level <= logging.DEBUG else logging.CRITICAL)
