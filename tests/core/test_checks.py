"""Checks of what callers pass to element operations: templates, their keys, indices, deltas and timeouts."""

from __future__ import annotations

import numpy as np
import pytest

from pastset.core.checks import TIMEOUT_MAX, check_delta, check_index, check_template, check_timeout, template_key
from pastset.errors import PastSetTypeError, PastSetValueError


def test_a_template_of_types_and_hashable_constants_is_returned_as_it_is() -> None:
    template = ("jobs", int, (1, "a"), frozenset({2}), None, 1.5)
    assert check_template(template) is template
    assert check_template(()) == ()


def test_a_template_that_is_not_a_tuple_says_what_one_looks_like() -> None:
    with pytest.raises(PastSetTypeError, match=r"a template must be a tuple such as \('name', int, float\), got list"):
        check_template(["jobs", int])


@pytest.mark.parametrize(("part", "kind"), [([1], "list"), ({"a": 1}, "dict"), ({1}, "set"), ((1, [2]), "tuple")])
def test_an_unhashable_constant_is_named_with_its_position(part: object, kind: str) -> None:
    with pytest.raises(PastSetTypeError, match=f"template position 1 holds a {kind}, which cannot name an element"):
        check_template(("jobs", part))


@pytest.mark.parametrize("part", [float("nan"), complex(0, float("nan")), (1, float("nan")), frozenset({float("nan")})])
def test_nan_anywhere_in_a_constant_is_refused(part: object) -> None:
    with pytest.raises(PastSetValueError, match="template position 2 holds NaN"):
        check_template(("x", int, part))


def test_template_keys_meet_for_equal_templates_and_keep_one_true_and_one_float_apart() -> None:
    assert template_key(("a", int, 1)) == template_key(("a", int, 1))
    keys = {template_key(("a", 1)), template_key(("a", True)), template_key(("a", 1.0))}
    assert len(keys) == 3
    assert ("a", 1) == ("a", True) == ("a", 1.0), "what the keys must tell apart"


def test_timeouts_are_float_seconds_or_none() -> None:
    assert check_timeout(None) is None
    for value in (3, 0.5, 0, TIMEOUT_MAX):
        seconds = check_timeout(value)
        assert type(seconds) is float and seconds == float(value)


@pytest.mark.parametrize("value", [True, "5", b"5", [1], 1j])
def test_a_timeout_that_is_not_a_number_is_a_type_error(value: object) -> None:
    with pytest.raises(
        PastSetTypeError, match=f"timeout must be a number of seconds or None, got {type(value).__name__}"
    ):
        check_timeout(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), TIMEOUT_MAX * 2, 10**400])
def test_a_timeout_beyond_the_limit_says_to_pass_none(value: object) -> None:
    with pytest.raises(PastSetValueError, match="or None to wait as long as it takes") as caught:
        check_timeout(value)
    assert len(str(caught.value)) < 250, "a huge number is shown cut short"


def test_indices_are_integers_numpy_ones_included() -> None:
    assert check_index(-1) == -1
    index = check_index(np.int64(7))
    assert type(index) is int and index == 7


@pytest.mark.parametrize("value", [True, 2.0, "3", None])
def test_an_index_that_is_not_an_integer_is_named(value: object) -> None:
    with pytest.raises(PastSetTypeError, match=f"an index must be an integer.*got {type(value).__name__} {value!r}"):
        check_index(value)


def test_deltas_are_whole_numbers_or_none() -> None:
    assert check_delta(None) is None
    assert check_delta(-1) == -1
    delta = check_delta(3.0)
    assert type(delta) is int and delta == 3


@pytest.mark.parametrize("value", [True, "3", [3]])
def test_a_delta_that_is_not_a_number_is_a_type_error(value: object) -> None:
    with pytest.raises(PastSetTypeError, match="delta must be a number"):
        check_delta(value)


@pytest.mark.parametrize(
    ("value", "why"), [(2.5, "must be whole"), (float("inf"), "must be finite"), (float("nan"), "must be finite")]
)
def test_a_delta_that_is_not_a_whole_finite_count_is_a_value_error(value: float, why: str) -> None:
    with pytest.raises(PastSetValueError, match=why):
        check_delta(value)
