"""The one exception tree of pastset.

Every error a PastSet program can meet derives from :class:`PastSetError`, with
branches a caller can catch separately.  Errors that describe a wrong argument
also derive from the matching built-in (``TypeError`` / ``ValueError``) so that
generic code catching those keeps working.  Each message says what happened and
what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AppNotFoundError",
    "ConfigurationError",
    "DeployError",
    "ElementDeletedError",
    "ExpiredError",
    "JournalError",
    "PastSetConnectionError",
    "PastSetError",
    "PastSetTimeoutError",
    "PastSetTypeError",
    "PastSetValueError",
    "RemoteError",
    "RunEndedError",
    "SerialisationError",
    "WheelhouseError",
    "XFunctionError",
]


class PastSetError(Exception):
    """Root of every error raised by pastset."""

    #: Remote traceback text when the error was raised on the server.
    remote_traceback: str | None = None


class PastSetTypeError(PastSetError, TypeError):
    """An argument has the wrong type (a template that is not a tuple, a text index)."""


class PastSetValueError(PastSetError, ValueError):
    """An argument has the right type but a value that cannot be used."""


class ExpiredError(PastSetError):
    """An indexed observe asked for a tuple whose storage was freed by ``axe``."""


class ElementDeletedError(PastSetError):
    """The element was deleted with ``delelement``; ``enter`` it again for a new one."""


class PastSetTimeoutError(PastSetError):
    """A bounded operation did not complete in time."""


class PastSetConnectionError(PastSetError):
    """The PastSet server cannot be reached, or the connection to it was lost."""


class RunEndedError(PastSetConnectionError):
    """The run this program belongs to has ended; no further operation is possible."""


class ConfigurationError(PastSetError):
    """A setting, hosts file or command line cannot be used."""


class AppNotFoundError(ConfigurationError):
    """An application or X-function module is not in PSBIN."""


class SerialisationError(PastSetError, TypeError):
    """A value cannot cross the wire (checked on the caller's side before sending)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while blocked in an operation; its message says which ("interrupted while waiting in observe on ...").

    A :class:`KeyboardInterrupt` and not a :class:`PastSetError` (so not in
    ``__all__``'s tree): ``except Exception`` must never swallow Ctrl-C, and
    ``except KeyboardInterrupt`` still catches it.  Uncaught, it prints that one
    line instead of a traceback through the library and the socket module.
    Exported as ``pastset.Interrupted``.
    """


class XFunctionError(PastSetError):
    """An X-function could not be loaded, or raised while filtering a tuple."""


class DeployError(PastSetError):
    """Deploying pastset to a host, or erasing it there, failed."""


class WheelhouseError(PastSetError):
    """The wheels for a deployment cannot be made here."""


class JournalError(ConfigurationError):
    """A journal file is damaged or not a journal; ``path`` and ``offset`` say where."""

    def __init__(self, message: str = "", path: str = "", offset: int = -1) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class RemoteError(PastSetError):
    """An unexpected error inside the server; ``remote_traceback`` holds its cause."""


#: Classes a server reply may name; anything else arrives as RemoteError.
BY_NAME: dict[str, type[PastSetError]] = {
    cls.__name__: cls
    for cls in (
        PastSetError,
        PastSetTypeError,
        PastSetValueError,
        ExpiredError,
        ElementDeletedError,
        PastSetTimeoutError,
        PastSetConnectionError,
        RunEndedError,
        ConfigurationError,
        AppNotFoundError,
        SerialisationError,
        XFunctionError,
        DeployError,
        WheelhouseError,
        JournalError,
        RemoteError,
    )
}
