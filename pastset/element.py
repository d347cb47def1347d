"""The element base class under its public name, for X-function modules.

An X-function defines ``class Element(pastset.element.Element)``, as in
pyPastSet; the element itself lives in :mod:`pastset.core.element`.
"""

from pastset.core.element import Element, Monitor, check_delta, check_index, check_template, deadline

__all__ = ["Element", "Monitor", "check_delta", "check_index", "check_template", "deadline"]
