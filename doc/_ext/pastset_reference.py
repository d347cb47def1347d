"""Reference tables generated from the code, so the manual cannot drift from it.

``pastset-settings``
    Every setting of :data:`pastset.settings.SPEC`: name, meaning, default.

``pastset-command NAME``
    Usage, description and options of a command that setup.cfg installs
    (pypsrun, pypsscheduler, ...), read from the argument parser the command
    itself builds.
"""

from __future__ import annotations

import argparse
import configparser
import importlib
import os
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive


def console_scripts() -> dict[str, str]:
    """The commands setup.cfg installs, as name -> "module:function"."""
    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    lines = parser.get("options.entry_points", "console_scripts", fallback="").splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {name.strip(): target.strip() for name, target in pairs}


def _cell(content: Any) -> nodes.entry:
    entry = nodes.entry()
    if isinstance(content, nodes.Node):
        entry += content
    else:
        entry += nodes.paragraph(text=str(content))
    return entry


def _code(text: str) -> nodes.paragraph:
    return nodes.paragraph("", "", nodes.literal(text=text)) if text else nodes.paragraph(text="")


def inline(text: str) -> nodes.paragraph:
    """A paragraph of docstring text, with its ``literal`` spans shown as code."""
    paragraph = nodes.paragraph()
    for number, part in enumerate(" ".join(text.split()).split("``")):
        if part:
            paragraph += nodes.literal(text=part) if number % 2 else nodes.Text(part)
    return paragraph


def table(headers: list[str], rows: list[list[Any]], widths: list[int]) -> nodes.table:
    """A docutils table with a header row."""
    result = nodes.table()
    group = nodes.tgroup(cols=len(headers))
    result += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for title in headers:
        row += _cell(title)
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for content in cells:
            row += _cell(content)
        body += row
    return result


class SettingsTable(Directive):
    """``pastset-settings``: the table of every PS* setting."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from pastset.settings import SPEC

        rows = [
            [_code(name), meaning, _code(default) if default else "(empty)"]
            for name, (_, default, meaning) in SPEC.items()
        ]
        return [table(["Setting", "Meaning", "Default"], rows, [18, 62, 20])]


class _CapturedError(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The argument parser command ``name`` builds, caught before it parses anything."""
    import pastset.settings

    module_name, _, function = console_scripts()[name].partition(":")
    main = getattr(importlib.import_module(module_name), function)
    saved_env = dict(os.environ)
    saved_parse = argparse.ArgumentParser.parse_args
    saved_paths = pastset.settings.config_paths

    def grab(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _CapturedError(self)

    argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign]
    pastset.settings.config_paths = lambda: []  # the build machine's settings must not matter
    try:
        for key in [k for k in os.environ if k.startswith("PS")]:
            del os.environ[key]
        main([])
    except _CapturedError as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_args = saved_parse  # type: ignore[method-assign]
        pastset.settings.config_paths = saved_paths
        os.environ.clear()
        os.environ.update(saved_env)
    raise RuntimeError(f"{name} ({module_name}:{function}) returned without building its argument parser")


def _option_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar if isinstance(action.metavar, str) else action.dest
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def _default(action: argparse.Action) -> str:
    value = action.default
    if value in (None, False, [], "", argparse.SUPPRESS) or action.nargs == 0:
        return ""
    return str(value)


class CommandOptions(Directive):
    """``pastset-command NAME``: usage, description and options of a command."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        commands = console_scripts()
        if name not in commands:
            raise self.error(f"unknown command {name!r}; setup.cfg installs: {', '.join(commands)}")
        parser = command_parser(name)
        formatter = parser._get_formatter()
        usage = parser.format_usage().removeprefix("usage: ").strip()
        block = nodes.literal_block(usage, usage)
        block["language"] = "text"
        result: list[nodes.Node] = [block]
        if parser.description:
            result.append(inline(parser.description))
        rows = []
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            meaning = formatter._expand_help(action) if action.help else ""
            if action.choices and not isinstance(action.choices, dict):
                meaning += f" (one of: {', '.join(map(str, action.choices))})"
            rows.append([_code(_option_name(action)), inline(meaning), _code(_default(action))])
        result.append(table(["Option", "Meaning", "Default"], rows, [24, 60, 16]))
        return result


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("pastset-settings", SettingsTable)
    app.add_directive("pastset-command", CommandOptions)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
