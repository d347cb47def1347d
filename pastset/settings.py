"""The one settings object: internal defaults < ini files < environment.

Every PS* setting of SEMANTICS.md is read here and nowhere else: this is the
only module of pastset that reads ``os.environ`` (for the settings, for a
child's environment, and for the batch system's variables).  Values are typed;
an invalid one falls back to its default with a warning that names the setting
and the bad value.  PSCONFHELP names a Python script executed (in this process,
so it can set ``os.environ``) just before the environment is read, the hook
batch systems use to hand over their node list.  The run's own wiring (where
the name server is, the run's name, the task a process serves) travels in PSNS,
PSRUN and PSTASK, set by pypsrun for the processes it starts.

The table of settings and their parsers is :mod:`pastset.settings_spec`; what
a process does with its settings lives beside: logging in
:mod:`pastset.logsetup`, which hosts are this machine in
:mod:`pastset.thishost`.  Their public names are importable from here too.
"""

from __future__ import annotations

import configparser
import difflib
import logging
import os
import runpy
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from pastset.errors import ConfigurationError
from pastset.logsetup import SECRETS, SecretFilter, configure_logging, private_log_file
from pastset.settings_spec import LEVELS, SPEC
from pastset.thishost import interface_addresses, is_this_host, this_host_names

__all__ = [
    "LEVELS",
    "PASSED_ON",
    "SECRETS",
    "SETTINGS_HELP",
    "SPEC",
    "SecretFilter",
    "Settings",
    "Wiring",
    "adopt_environment",
    "batch_environment",
    "config_paths",
    "configure_logging",
    "interface_addresses",
    "is_this_host",
    "private_log_file",
    "this_host_names",
]

log = logging.getLogger(__name__)


def config_paths() -> list[Path]:
    """Configuration files searched, lowest priority first."""
    site = Path(platformdirs.site_config_dir("pastset")) / "pastset.conf"
    user = Path(platformdirs.user_config_dir("pastset")) / "pastset.conf"
    return [Path("/etc/pypastset.conf"), site, Path("~/.pypastset.conf").expanduser(), user]


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
