"""Names under which a run's objects are registered in its Pyro5 name server."""

from __future__ import annotations

__all__ = ["FACTORY", "scheduler_name", "space_name"]

#: the object of a long-lived pypsserver that opens named spaces on demand
FACTORY = "pastset.server"


def space_name(run: str) -> str:
    """Name-server name of the space of ``run``."""
    return f"pastset.space.{run}"


def scheduler_name(run: str) -> str:
    """Name-server name of the scheduler of ``run``."""
    return f"pastset.scheduler.{run}"
