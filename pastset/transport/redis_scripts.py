"""What a run keeps in Redis: the names of its keys, the Lua scripts that act on them, their errors.

Both sides of a Redis store use these: the clients' links
(:mod:`pastset.transport.redis_store`) and the server's watcher
(:mod:`pastset.transport.redis_admin`); ``pypsclean`` uses :class:`Keys` to
find a dead run's keys.  The scripts are the sections of ``redis_store.lua``
(package data beside this module), each with the shared prelude, and report a
refused operation as ``"ERRORCLASS message"``, which :func:`_raise` turns back
into that PastSet error.
"""

from __future__ import annotations

from importlib import resources

from pastset.errors import BY_NAME, RemoteError

__all__ = ["READ_ONLY", "SCRIPTS", "Keys"]

#: Scripts that change nothing: they never wait for replicas.
READ_ONLY = frozenset({"info", "read", "oldest_lease"})


def _scripts() -> dict[str, str]:
    text = resources.files("pastset.transport").joinpath("redis_store.lua").read_text()
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("--! "):
            current = sections.setdefault(line[4:].strip(), [])
        else:
            current.append(line)
    prelude = "\n".join(sections.pop("PRELUDE"))
    return {name: prelude + "\n" + "\n".join(body) for name, body in sections.items()}


SCRIPTS = _scripts()


class Keys:
    """Key names of one run in Redis: ``{ps:RUN}:reg`` and ``{ps:RUN:eID}:*``."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.prefix = f"ps:{run}"
        self.registry = f"{{{self.prefix}}}:reg"

    def meta(self, eid: int) -> str:
        return f"{{{self.prefix}:e{eid}}}:m"

    def key(self, eid: int, part: str) -> str:
        return f"{{{self.prefix}:e{eid}}}:{part}"

    def patterns(self) -> list[str]:
        """SCAN patterns that find every key of this run (and of no other)."""
        return [f"{{{self.prefix}}}*", f"{{{self.prefix}:e*"]


def _raise(err: Exception) -> None:
    """Turn a script's "ERRORCLASS message" reply into that PastSet error."""
    text = str(err)
    name, _, message = text.partition(" ")
    cls = BY_NAME.get(name)
    if cls is None:
        raise RemoteError(f"Redis refused a PastSet operation: {text}") from None
    raise cls(message) from None
