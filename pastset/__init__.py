"""pastset: a tuple-space distributed shared memory in the PastSet tradition.

``import pastset`` gives the public API::

    pset = pastset.PastSet()
    jobs = pset.enter(("job", int))
    jobs.move((42,))
    print(jobs.observe())

See SEMANTICS in the documentation for the exact meaning of every operation.
"""

from __future__ import annotations

from pastset import element
from pastset.client import ElementHandle, PastSet
from pastset.errors import (
    AppNotFoundError,
    ConfigurationError,
    DeployError,
    ElementDeletedError,
    ExpiredError,
    Interrupted,
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

__all__ = [
    "AppNotFoundError",
    "ConfigurationError",
    "DeployError",
    "ElementDeletedError",
    "ElementHandle",
    "ExpiredError",
    "Interrupted",
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
]
