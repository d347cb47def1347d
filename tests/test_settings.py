"""Settings: defaults < ini files < environment, PSCONFHELP, invalid values."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pastset.errors import ConfigurationError
from pastset.settings import Settings, config_paths


def ini(path: Path, **values: str) -> Path:
    path.write_text("[DEFAULT]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def test_defaults_match_the_contract():
    s = Settings.load(environ={}, files=[])
    assert (s.PSBIN, s.PSMASTER, s.PSHOSTS, s.PSPROCS, s.PSSSH, s.PSPYTHON) == (".", "", "", 1, "ssh", "python")
    assert (s.PSPKILL, s.PSLOGPATH, s.PSLOGLEVEL, s.PSCONFHELP) == ("pkill -9 -f", "", "warning", "")
    assert s.waitprocs == 1


def test_files_override_defaults_and_environment_overrides_files(tmp_path):
    low = ini(tmp_path / "low.conf", PSPROCS="3", PSLOGLEVEL="info", PSBIN="/low")
    high = ini(tmp_path / "high.conf", PSPROCS="5")
    s = Settings.load(environ={"PSBIN": "/env"}, files=[low, high, tmp_path / "missing.conf"])
    assert (s.PSPROCS, s.PSLOGLEVEL, s.PSBIN) == (5, "info", "/env")
    assert s.sources["PSPROCS"] == str(high) and s.sources["PSBIN"] == "environment"
    assert s.waitprocs == 5
    assert [read for _, read in s.searched] == [True, True, False]


def test_waitprocs_follows_procs_unless_set():
    assert Settings.load(environ={"PSPROCS": "4"}, files=[]).waitprocs == 4
    assert Settings.load(environ={"PSPROCS": "4", "PSWAITPROCS": "2"}, files=[]).waitprocs == 2


@pytest.mark.parametrize(
    ("key", "bad", "default"),
    [
        ("PSPROCS", "many", 1),
        ("PSPROCS", "-2", 1),
        ("PSLOGLEVEL", "loud", "warning"),
        ("PSWAITPROCS", "x", None),
    ],
)
def test_invalid_values_fall_back_with_a_warning_naming_them(key, bad, default, caplog):
    with caplog.at_level(logging.WARNING):
        s = Settings.load(environ={key: bad}, files=[])
    assert getattr(s, key) == default
    assert any(key in m and bad in m for m in s.problems)
    assert key in caplog.text


def test_malformed_ini_file_is_reported_and_skipped(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("PSPROCS = 3\n[DEFAULT\n")
    s = Settings.load(environ={}, files=[bad])
    assert s.PSPROCS == 1
    assert any(str(bad) in m for m in s.problems)


def test_confhelp_runs_before_the_environment_is_read(tmp_path, monkeypatch):
    helper = tmp_path / "helper.py"
    hosts = tmp_path / "nodes"
    helper.write_text(f"import os\nos.environ['PSPROCS'] = '6'\nos.environ['PSHOSTS'] = {str(hosts)!r}\n")
    monkeypatch.delenv("PSPROCS", raising=False)
    monkeypatch.delenv("PSHOSTS", raising=False)
    monkeypatch.setenv("PSCONFHELP", str(helper))
    try:
        s = Settings.load(files=[])
        assert (s.PSPROCS, s.PSHOSTS) == (6, str(hosts))
    finally:  # the helper wrote os.environ itself
        for key in ("PSPROCS", "PSHOSTS"):
            os.environ.pop(key, None)


def test_confhelp_from_ini_file_and_failures_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("PSCONFHELP", raising=False)
    conf = ini(tmp_path / "c.conf", PSCONFHELP=str(tmp_path / "nope.py"))
    with pytest.raises(ConfigurationError, match="nope.py"):
        Settings.load(files=[conf])
    broken = tmp_path / "broken.py"
    broken.write_text("raise KeyError('SLURM_JOB_NODELIST')\n")
    monkeypatch.setenv("PSCONFHELP", str(broken))
    with pytest.raises(ConfigurationError, match="SLURM_JOB_NODELIST"):
        Settings.load(files=[])


def test_search_path_includes_compatibility_and_platform_files():
    names = [str(p) for p in config_paths()]
    assert names[0] == "/etc/pypastset.conf"
    assert any(n.endswith(".pypastset.conf") for n in names)
    assert sum(n.endswith("pastset/pastset.conf") for n in names) == 2


def test_describe_shows_values_sources_and_files(tmp_path):
    conf = ini(tmp_path / "c.conf", PSPROCS="2")
    text = Settings.load(environ={"PSLOGLEVEL": "debug"}, files=[conf]).describe()
    assert "PSPROCS" in text and str(conf) in text and "(read)" in text
    assert "'debug'" in text and "[environment]" in text


def test_each_default_is_written_once_and_settings_are_read_only() -> None:
    import dataclasses

    from pastset.settings import SPEC

    names = [f.name for f in dataclasses.fields(Settings) if f.name.startswith("PS")]
    assert names == list(SPEC), "Settings fields and SPEC must list the same settings in the same order"
    for name in names:
        parse, text, _ = SPEC[name]
        assert getattr(Settings(), name) == parse(text), name
    loaded = Settings.load(environ={"PSPROCS": "3"}, files=[])
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.PSPROCS = 4  # type: ignore[misc]
    assert loaded.PSPROCS == 3


def test_the_wiring_reaches_a_child_and_comes_back() -> None:
    from pastset.settings import Wiring

    wiring = Wiring(run="r1", secret="s3cret", ns="127.0.0.1:9", task="t7", psbin=("/a", "/b"))
    env = Settings.load(environ={}, files=[]).child_environment(wiring, base={"HOME": "/h", "PSRUN": "stale"})
    assert env["HOME"] == "/h"
    child = Settings.load(environ=env, files=[])
    assert Wiring.of(child) == wiring
    assert child.ns_address() == ("127.0.0.1", 9)


def test_a_remote_child_gets_only_search_paths_locale_and_pyro_settings() -> None:
    base = {"PATH": "/bin", "LANG": "C", "PYRO_PORT": "1", "HOME": "/h", "SSH_AUTH_SOCK": "/tmp/a"}
    env = Settings.load(environ={}, files=[]).child_environment(base=base, remote=True)
    assert {k: env[k] for k in ("PATH", "LANG", "PYRO_PORT")} == {"PATH": "/bin", "LANG": "C", "PYRO_PORT": "1"}
    assert "HOME" not in env and "SSH_AUTH_SOCK" not in env


@pytest.mark.parametrize(
    ("name", "closest"), [("PSPROC", "PSPROCS"), ("PSHOST", "PSHOSTS"), ("PSLOGLEVL", "PSLOGLEVEL")]
)
def test_unknown_settings_in_the_environment_name_the_closest_known_one(name, closest, caplog):
    with caplog.at_level(logging.WARNING):
        s = Settings.load(environ={name: "4", "PS1": "$ ", "PATH": "/bin"}, files=[])
    assert s.PSPROCS == 1  # the mistyped setting changed nothing
    assert [m for m in s.problems if "unknown" in m] == [
        f"unknown setting {name} in the environment is ignored; did you mean {closest}?"
    ]
    assert f"did you mean {closest}?" in caplog.text and "PS1" not in caplog.text


def test_unknown_settings_in_an_ini_file_are_named_with_the_file(tmp_path):
    conf = ini(tmp_path / "c.conf", PSPROCS="3", PSWAITPROC="2", PSZZQQ="1")
    s = Settings.load(environ={}, files=[conf])
    assert (s.PSPROCS, s.waitprocs) == (3, 3)
    unknown = sorted(m for m in s.problems if "unknown" in m)
    assert unknown == [
        f"unknown setting PSWAITPROC in configuration file {conf} is ignored; did you mean PSWAITPROCS?",
        f"unknown setting PSZZQQ in configuration file {conf} is ignored; run with -h to see the settings",
    ]


def test_the_secret_never_reaches_a_log_and_log_files_are_private(tmp_path, capfd):
    from pastset.settings import SECRETS, configure_logging

    path = tmp_path / "run.log"
    environ = {"PSLOGLEVEL": "debug", "PSLOGPATH": str(path), "PSSECRET": "s3cr/t+value"}
    settings = Settings.load(environ=environ, files=[])
    saved = logging.getLogger().handlers[:]
    try:
        configure_logging(settings, "test")
        logger = logging.getLogger("pastset.test")
        logger.debug("GET /?token=%s HTTP/1.1", "s3cr%2Ft%2Bvalue")
        logger.info("secret %s in args", settings.PSSECRET)
        logger.warning("secret in the message itself: s3cr/t+value")
        try:
            raise RuntimeError("failed with s3cr/t+value")
        except RuntimeError:
            logger.exception("a traceback")
        SECRETS.add("other-secret")  # one made after logging is set up, as pypsrun does
        logger.error("and %s", "other-secret")
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        for handler in logging.getLogger().handlers:
            handler.close()
        logging.getLogger().handlers[:] = saved
    text, err = path.read_text(), capfd.readouterr().err
    assert os.stat(path).st_mode & 0o777 == 0o600
    for out in (text, err):
        assert "s3cr" not in out and "other-secret" not in out
        assert out.count("(secret)") == 6 and "RuntimeError: failed with (secret)" in out


def test_an_existing_log_file_is_made_private(tmp_path):
    from pastset.settings import private_log_file

    path = tmp_path / "old.log"
    path.write_text("earlier\n")
    path.chmod(0o644)
    private_log_file(str(path)).close()
    assert os.stat(path).st_mode & 0o777 == 0o600 and path.read_text() == "earlier\n"
