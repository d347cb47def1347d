"""Loading X-functions: the ``Element`` subclasses that client code names from PSBIN.

An element may be entered with an X-function, a module in PSBIN whose class
``Element(pastset.core.element.Element)`` overrides ``move`` and/or ``observe``.
Finding that module, importing it once, checking what it defines and creating
the element from it is the one place where a space runs code a client named,
so it lives apart from :class:`pastset.core.space.Space`, with its checks in one
place.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from pastset.core.element import Element
from pastset.errors import AppNotFoundError, XFunctionError
from pastset.psbin import find_in_path

__all__ = ["build_element", "load_xfunction"]


def load_xfunction(name: str, psbin: list[str]) -> type[Element]:
    """Load the ``Element`` class of X-function module ``name`` from PSBIN.

    Only files found in PSBIN are loaded, never an arbitrary importable module,
    so what a client names cannot reach outside the directories the run trusts.
    """
    if not isinstance(name, str) or not name.replace("_", "a").replace(".py", "").isalnum():
        raise XFunctionError(f"X-function names are module names such as 'xtypecast', got {name!r}")
    path = find_in_path(name, psbin, ".py")
    if path is None:
        raise AppNotFoundError(
            f"X-function module {name!r} not found: no {name.removesuffix('.py')}.py in PSBIN "
            f"({os.pathsep.join(psbin)}); put the module there or point PSBIN at its directory"
        )
    modname = f"pastset_xfunction_{path.stem}_{abs(hash(str(path)))}"
    module = sys.modules.get(modname)
    if module is None:
        spec = importlib.util.spec_from_file_location(modname, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise XFunctionError(f"X-function module {path} failed to load: {type(err).__name__}: {err}") from err
        sys.modules[modname] = module
    cls = getattr(module, "Element", None)
    if not (isinstance(cls, type) and issubclass(cls, Element)):
        raise XFunctionError(
            f"X-function module {path} has no class Element(pastset.core.element.Element); "
            "define one that overrides move(data) and/or observe(index)"
        )
    return cls


def build_element(template: tuple, xfunction: str | None, psbin: list[str]) -> Element:
    """A new element for ``template``: of X-function ``xfunction`` from ``psbin``, or a plain one."""
    cls = load_xfunction(xfunction, psbin) if xfunction else Element
    try:
        return cls(template)
    except Exception as err:
        raise XFunctionError(
            f"X-function {xfunction!r} failed to create its element: {type(err).__name__}: {err}"
        ) from err
