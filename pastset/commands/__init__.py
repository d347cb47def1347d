"""The command-line programs: each module has a ``main(argv=None) -> int``."""

from __future__ import annotations

import argparse

from ..settings import Settings

__all__ = ["parser_for"]


def parser_for(prog: str, description: str, settings: Settings) -> argparse.ArgumentParser:
    """An argument parser whose -h also shows the settings and files searched."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=settings.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
