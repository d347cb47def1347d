"""Tracebacks that show the user's code: which frames are internal, chains, and the interrupt hook."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import pastset
from pastset.errors import SerialisationError
from pastset.tracebacks import format_user_exception, install_interrupt_hook, is_internal
from pastset.wire import encode

PACKAGE = Path(pastset.__file__).parent


def test_pastset_runpy_socket_pyro5_and_msgpack_frames_are_internal() -> None:
    assert is_internal(str(PACKAGE / "client.py"))
    assert is_internal(runpy.__file__)
    assert is_internal("/opt/lib/python3/site-packages/Pyro5/core.py")
    assert is_internal("/opt/lib/python3/site-packages/msgpack/fallback.py")
    assert is_internal("<frozen runpy>")


def test_the_users_files_are_not_internal(tmp_path: Path) -> None:
    assert not is_internal(str(tmp_path / "master.py"))
    assert not is_internal(__file__)
    assert not is_internal("/home/me/Pyro5_notes.py")
    assert not is_internal(str(PACKAGE) + "_fork/x.py"), "a sibling folder whose name starts alike is not pastset"


def users_code() -> None:
    encode(object())  # fails inside pastset.wire


def test_a_failure_inside_pastset_shows_the_users_lines_only() -> None:
    with pytest.raises(SerialisationError) as caught:
        users_code()
    text = format_user_exception(caught.value)
    assert text.startswith("Traceback (most recent call last):\n")
    assert "in users_code" in text and __file__ in text
    assert str(PACKAGE) not in text
    assert text.rstrip().splitlines()[-1].startswith("pastset.errors.SerialisationError: a value of type")


def test_causes_and_contexts_are_shown_oldest_first_and_suppressed_ones_not() -> None:
    try:
        try:
            raise KeyError("first")
        except KeyError as err:
            raise ValueError("second") from err
    except ValueError as err:
        caused = err
    text = format_user_exception(caused)
    assert text.index("KeyError: 'first'") < text.index("direct cause") < text.index("ValueError: second")
    assert text == "".join(traceback.format_exception(caused)), "with only user frames: as Python prints it"
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("while handling")
    except ValueError as err:
        context = err
    assert format_user_exception(context) == "".join(traceback.format_exception(context))
    try:
        try:
            raise KeyError("hidden")
        except KeyError:
            raise ValueError("alone") from None
    except ValueError as err:
        suppressed = err
    text = format_user_exception(suppressed)
    assert "hidden" not in text and text.count("Traceback") == 1


def test_a_cycle_of_contexts_ends() -> None:
    first, second = ValueError("one"), KeyError("two")
    first.__context__, second.__context__ = second, first
    text = format_user_exception(first)
    assert "ValueError: one" in text and "KeyError: 'two'" in text
    assert "Traceback" not in text, "never raised: no frames"


def test_when_every_frame_is_internal_all_are_kept() -> None:
    inside = str(PACKAGE / "__init__.py")
    try:
        exec(compile("\n\nraise RuntimeError('deep inside')", inside, "exec"))
    except RuntimeError as err:
        only_internal = err.with_traceback(err.__traceback__.tb_next if err.__traceback__ else None)
    text = format_user_exception(only_internal)
    assert f'File "{inside}", line 3' in text
    assert "RuntimeError: deep inside" in text


@pytest.fixture
def saved_excepthook() -> Iterator[None]:
    saved = sys.excepthook
    yield
    sys.excepthook = saved


class Stop(KeyboardInterrupt):
    pass


@pytest.mark.usefixtures("saved_excepthook")
def test_the_hook_is_installed_once_and_other_errors_reach_the_previous_hook() -> None:
    seen: list[BaseException] = []
    sys.excepthook = lambda cls, err, tb: seen.append(err)
    install_interrupt_hook(Stop)
    hook = sys.excepthook
    install_interrupt_hook(Stop)
    assert sys.excepthook is hook, "installed twice, it would print twice"
    err = ValueError("other")
    sys.excepthook(ValueError, err, None)
    assert seen == [err]


def test_an_uncaught_interrupt_prints_one_line_and_ends_as_sigint_does(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "from pastset.errors import Interrupted\n"
        "from pastset.tracebacks import install_interrupt_hook\n"
        "install_interrupt_hook(Interrupted)\n"
        "print('before', flush=True)\n"
        "raise Interrupted('the run was stopped')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    done = subprocess.run([sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGINT
    assert done.stdout == "before\n"
    assert done.stderr == "app.py: the run was stopped\n"
