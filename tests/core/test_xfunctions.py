"""Loading X-functions on its own (pastset.core.xfunctions): from PSBIN only, once, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pastset.core.element import Element
from pastset.core.xfunctions import build_element, load_xfunction
from pastset.errors import AppNotFoundError, XFunctionError


def write(psbin: Path, name: str, text: str) -> None:
    (psbin / f"{name}.py").write_text(text)


def test_a_module_is_loaded_once_and_its_element_class_checked(tmp_path: Path) -> None:
    write(tmp_path, "xdouble", "import pastset.element\nclass Element(pastset.element.Element):\n    pass\n")
    write(tmp_path, "xnotelement", "class Element:\n    pass\n")
    cls = load_xfunction("xdouble", [str(tmp_path)])
    assert issubclass(cls, Element) and load_xfunction("xdouble.py", [str(tmp_path)]) is cls
    with pytest.raises(XFunctionError, match="has no class Element"):
        load_xfunction("xnotelement", [str(tmp_path)])
    with pytest.raises(AppNotFoundError, match="PSBIN"):
        load_xfunction("xmissing", [str(tmp_path)])
    with pytest.raises(XFunctionError, match="module names"):
        load_xfunction("os.path", [str(tmp_path)])


def test_failures_to_load_or_to_create_are_xfunction_errors(tmp_path: Path) -> None:
    write(tmp_path, "xbroken", "raise ImportError('no such thing')\n")
    write(
        tmp_path,
        "xpicky",
        "import pastset.element\n"
        "class Element(pastset.element.Element):\n"
        "    def __init__(self, template):\n"
        "        raise ValueError('wants two fields')\n",
    )
    with pytest.raises(XFunctionError, match="failed to load: ImportError: no such thing"):
        load_xfunction("xbroken", [str(tmp_path)])
    with pytest.raises(XFunctionError, match="failed to create its element: ValueError: wants two fields"):
        build_element(("x",), "xpicky", [str(tmp_path)])
    plain = build_element(("x",), None, [str(tmp_path)])
    assert type(plain) is Element and plain.template() == ("x",)
