"""Logging setup: the secret filter scrubs every part of a record, log files are private, levels apply.

:func:`pastset.logsetup.configure_logging` changes the root logger; the
``restore_logging`` fixture puts the root logger, the Pyro5/paramiko levels and
the shared :data:`~pastset.logsetup.SECRETS` filter back after each test.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pastset import logsetup
from pastset.logsetup import SecretFilter, configure_logging, private_log_file
from pastset.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    noisy = {name: logging.getLogger(name).level for name in ("Pyro5", "paramiko")}
    secrets = (logsetup.SECRETS.settings, set(logsetup.SECRETS.extra))
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)
    logsetup.SECRETS.settings, logsetup.SECRETS.extra = secrets


def record(msg: str, *args: object, exc: bool = False, stack: str | None = None) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("failed with s3cret-value inside")
        except RuntimeError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("t", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.stack_info = stack
    return rec


def test_the_secret_is_scrubbed_from_message_arguments_traceback_and_stack() -> None:
    settings = Settings.load(environ={"PSSECRET": "s3cret-value"}, files=[])
    filt = SecretFilter(settings)
    rec = record("connecting with %s to %s", "s3cret-value", "host", exc=True, stack="Stack: s3cret-value")
    assert filt.filter(rec) is True, "a record is never dropped"
    text = logging.Formatter().format(rec)
    assert "s3cret-value" not in text
    assert rec.getMessage() == "connecting with (secret) to host"
    assert "failed with (secret) inside" in text and "Stack: (secret)" in text


def test_url_quoted_forms_are_scrubbed_and_longer_secrets_first() -> None:
    filt = SecretFilter()
    filt.add("a/b c")
    filt.add("a/b c-and-more")
    filt.add("")  # nothing to scrub: ignored
    assert filt.secrets()[0] == "a%2Fb%20c-and-more", "longest first"
    assert "" not in filt.secrets()
    assert filt.scrub("redis://u:a%2Fb%20c@h and a/b c-and-more") == "redis://u:(secret)@h and (secret)"


def test_without_a_secret_records_pass_untouched() -> None:
    filt = SecretFilter(Settings.load(environ={}, files=[]))
    rec = record("value %d", 5)
    assert filt.filter(rec) is True
    assert rec.msg == "value %d" and rec.args == (5,)


def test_a_secret_handed_over_later_is_read_when_the_record_passes() -> None:
    filt = SecretFilter()
    rec = record("token tok-123")
    filt.add("tok-123")
    filt.filter(rec)
    assert rec.getMessage() == "token (secret)"


def test_a_log_file_is_created_private_and_an_open_one_is_narrowed(tmp_path: Path) -> None:
    fresh = tmp_path / "new.log"
    private_log_file(str(fresh)).close()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    shared = tmp_path / "shared.log"
    shared.write_text("earlier\n")
    shared.chmod(0o644)
    handler = private_log_file(str(shared))
    handler.emit(record("later"))
    handler.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o600
    assert shared.read_text() == "earlier\nlater\n", "appended, not truncated"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_applies_level_and_file_and_scrubs_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.log"
    settings = Settings.load(environ={"PSLOGPATH": str(path), "PSLOGLEVEL": "info", "PSSECRET": "hush-hush"}, files=[])
    configure_logging(settings, "pypstest")
    log = logging.getLogger("pastset.test")
    log.debug("not at info")
    log.info("the secret is %s", "hush-hush")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    assert "not at info" not in text
    assert " pypstest INFO the secret is (secret)" in text and "hush-hush" not in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    err = capsys.readouterr().err
    assert "the secret is (secret)" in err and "hush-hush" not in err
    assert logging.getLogger("Pyro5").level == logging.CRITICAL, "libraries' own noise is quiet above debug"


@pytest.mark.usefixtures("restore_logging")
def test_a_log_path_that_cannot_be_opened_is_reported_and_stderr_still_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "no-such-dir" / "run.log"
    configure_logging(Settings.load(environ={"PSLOGPATH": str(bad), "PSLOGLEVEL": "debug"}, files=[]), "pypstest")
    logging.getLogger("pastset.test").debug("still here")
    err = capsys.readouterr().err
    assert f"PSLOGPATH={str(bad)!r} cannot be opened" in err and "logging to stderr only" in err
    assert "still here" in err
    assert not bad.parent.exists()
    assert logging.getLogger("paramiko").level == logging.DEBUG
