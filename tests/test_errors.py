"""One error tree: every class a PastSetError, catchable by branch, and known to the client by name."""

from __future__ import annotations

import builtins

import pastset
import pastset.errors
from pastset.errors import BY_NAME


def test_every_public_error_is_a_pastset_error_under_its_own_name() -> None:
    for name in pastset.errors.__all__:
        cls = getattr(pastset.errors, name)
        assert issubclass(cls, pastset.errors.PastSetError), name
        assert getattr(pastset, name) is cls, f"pastset.{name} is not the same class"
        assert not hasattr(builtins, name), f"{name} shadows a built-in"


def test_a_reply_naming_any_public_error_arrives_as_that_class() -> None:
    assert set(BY_NAME) == set(pastset.errors.__all__)
    for name, cls in BY_NAME.items():
        assert cls.__name__ == name


def test_branches_that_are_also_builtin_errors() -> None:
    assert issubclass(pastset.PastSetTypeError, TypeError)
    assert issubclass(pastset.PastSetValueError, ValueError)
    assert issubclass(pastset.SerialisationError, TypeError)
    assert issubclass(pastset.RunEndedError, pastset.PastSetConnectionError)
    assert issubclass(pastset.AppNotFoundError, pastset.ConfigurationError)
