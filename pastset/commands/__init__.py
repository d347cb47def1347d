"""The command-line programs: each module has a ``main(argv=None) -> int``."""

from __future__ import annotations

import argparse
import sys

from pastset.errors import PastSetError
from pastset.settings import Settings

__all__ = ["load_settings", "parser_for"]


def load_settings(prog: str) -> Settings | None:
    """The settings, or None after saying on stderr why they cannot be loaded (the command then exits 2)."""
    try:
        return Settings.load()
    except PastSetError as err:
        sys.stderr.write(f"{prog}: {err}\n")
        return None


def parser_for(prog: str, description: str, settings: Settings) -> argparse.ArgumentParser:
    """An argument parser whose -h also shows the settings and files searched."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=settings.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
