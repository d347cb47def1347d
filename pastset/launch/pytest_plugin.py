"""A pytest plugin: the ``pastset_run`` fixture gives a test a whole local run.

Installed with pastset (a ``pytest11`` entry point), so a course can test a
student's program in a few lines::

    def test_bag_of_tasks(pastset_run):
        jobs = pastset_run.enter(("job", int))
        ...

The fixture starts :func:`pastset.local` with two clients and PSBIN the test
file's directory; mark a test ``@pytest.mark.pastset(procs=4, deadtime=10)``
to choose other settings.  The run ends with the test, whatever its outcome.
Importing this module costs nothing: pastset loads only when the fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["pastset_run"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``pastset`` marker."""
    config.addinivalue_line("markers", "pastset(procs=2, psbin=DIR, **settings): settings of the pastset_run fixture")


@pytest.fixture
def pastset_run(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A PastSet joined to a fresh local run (pastset.local), ended after the test."""
    import pastset

    marker = request.node.get_closest_marker("pastset")
    options: dict[str, Any] = {"procs": 2, "psbin": request.path.parent}
    if marker is not None:
        options.update(marker.kwargs)
    with pastset.local(**options) as pset:
        yield pset
