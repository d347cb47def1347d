"""Logging for every pastset command: its level and log file, and no secret in any line.

:func:`configure_logging` sets up ``logging`` from PSLOGLEVEL and PSLOGPATH,
with a log file readable by this user only and, on every handler, the
:class:`SecretFilter` that scrubs the run's secret from each record.  Kept
apart from the settings it is configured by: it is what a process does with
them once they are loaded.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pastset.settings import Settings

__all__ = ["SECRETS", "SecretFilter", "configure_logging", "private_log_file"]

log = logging.getLogger(__name__)


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
