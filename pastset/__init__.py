"""pastset: a tuple-space distributed shared memory in the PastSet tradition.

``import pastset`` gives the public API::

    pset = pastset.PastSet()
    jobs = pset.enter(("job", int))
    jobs.move((42,))
    print(jobs.observe())

See SEMANTICS in the documentation for the exact meaning of every operation.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from pastset import element
from pastset.client import ElementHandle, PastSet
from pastset.errors import (
    AppNotFoundError,
    ConfigurationError,
    DeployError,
    ElementDeletedError,
    ExpiredError,
    Interrupted,
    JournalError,
    PastSetConnectionError,
    PastSetError,
    PastSetTimeoutError,
    PastSetTypeError,
    PastSetValueError,
    RemoteError,
    RunEndedError,
    SerialisationError,
    WheelhouseError,
    XFunctionError,
)

__version__ = "0.1.0"


def local(procs: int = 1, psbin: Any = None, **settings: Any) -> AbstractContextManager[PastSet]:
    """A run on this machine for the length of a ``with`` block, joined by the PastSet it yields.

    ``with pastset.local(procs=2) as pset: ...`` starts the server side and
    ``procs`` clients as ``pypsrun`` does, and ends them when the block is left.
    See :func:`pastset.launch.local.local` for the arguments.
    """
    from pastset.launch.local import local as start  # the launcher loads only when a run is started here

    return start(procs, psbin, **settings)


__all__ = [
    "AppNotFoundError",
    "ConfigurationError",
    "DeployError",
    "ElementDeletedError",
    "ElementHandle",
    "ExpiredError",
    "Interrupted",
    "JournalError",
    "PastSet",
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
    "__version__",
    "element",
    "local",
]
