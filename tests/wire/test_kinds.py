"""What the codec knows: its type table, built-in functions by name, limits' errors and NumPy dtype specs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from pastset.errors import SerialisationError
from pastset.wire.kinds import (
    _TYPE_NAMES,
    _TYPES,
    MAX_DEPTH,
    SUPPORTED,
    _builtin,
    _builtin_name,
    _depth,
    _dtype_from,
    _dtype_spec,
    _refuse,
    _too_deep,
    _too_many_digits,
)


def test_the_type_table_goes_both_ways_and_supported_names_every_type() -> None:
    assert _TYPES["NoneType"] is type(None) and _TYPES["bytes"] is bytes
    for name, kind in _TYPES.items():
        assert _TYPE_NAMES[kind] == name
        assert name in SUPPORTED


def test_a_built_in_function_is_named_and_found_again() -> None:
    assert _builtin_name(len) == "builtins.len"
    assert _builtin(_builtin_name(len) or "") is len
    assert _builtin("builtins.max") is max


@pytest.mark.parametrize("obj", [lambda: 0, int, [].append, math.pow, "len"])
def test_nothing_but_a_built_in_function_of_that_name_travels_by_name(obj: object) -> None:
    assert _builtin_name(obj) is None  # math.pow is named pow, but it is not builtins.pow


@pytest.mark.parametrize("name", ["builtins.int", "builtins.no_such", "builtins.__name__", "builtins.True"])
def test_a_received_name_that_is_no_built_in_function_is_refused(name: str) -> None:
    with pytest.raises(SerialisationError, match="which is not a built-in function"):
        _builtin(name)


def test_depth_counts_container_levels_dict_keys_and_values_included() -> None:
    assert _depth(5) == 0
    assert _depth([]) == 1
    assert _depth((1, [2, {3}])) == 3
    assert _depth({"k": [[]]}) == 3
    assert _depth({((),): 1}) == 3, "a key nests too"
    deep: list = []
    for _ in range(MAX_DEPTH * 50):
        deep = [deep]
    assert _depth(deep) == MAX_DEPTH * 50 + 1, "walked without recursion"


def test_errors_name_the_limit_and_the_way_out() -> None:
    err = _too_deep(150)
    assert getattr(err, "too_deep", False) is True
    assert "nests 150 levels deep" in str(err) and f"the limit is {MAX_DEPTH}" in str(err) and "flatten" in str(err)
    assert f"more than {MAX_DEPTH} levels" in str(_too_deep())
    text = str(_too_many_digits(10**5000 - 1))  # 5000 digits, estimated from the bits
    assert re.search(r"an integer of about (4999|5000|5001) digits cannot be sent", text) and "int.to_bytes" in text
    text = str(_refuse(np.random.default_rng(0)))
    assert "numpy.random._generator.Generator" in text and SUPPORTED in text


def test_plain_dtypes_travel_as_their_string() -> None:
    assert _dtype_spec(np.dtype("<f8")) == "<f8"
    assert _dtype_from("<i4") == np.dtype("<i4")


def test_structured_dtypes_keep_names_offsets_padding_and_subarrays() -> None:
    dt = np.dtype({"names": ["a", "b"], "formats": ["<i2", ("<f4", (2, 3))], "offsets": [0, 8], "itemsize": 40})
    spec = _dtype_spec(dt)
    assert spec == {"names": ["a", "b"], "formats": ["<i2", ["<f4", [2, 3]]], "offsets": [0, 8], "itemsize": 40}
    assert _dtype_from(spec) == dt


@pytest.mark.parametrize(
    ("dt", "why"),
    [
        (np.dtype([(("title", "a"), "<i4")]), "the field 'a' has a title"),
        (np.dtype([("a", [("x", "<i4")])]), "the field 'a' is itself structured"),
        (np.dtype([("a", ([("x", "<i4")], 2))]), "a field that is an array of structures"),
    ],
)
def test_structured_dtypes_that_cannot_keep_their_layout_are_refused(dt: np.dtype, why: str) -> None:
    with pytest.raises(SerialisationError, match=f"cannot be sent: {why}; use flat fields"):
        _dtype_spec(dt)


@pytest.mark.parametrize(
    "spec",
    [
        "not-a-dtype",
        42,
        {"names": ["a"], "formats": ["<i4"], "offsets": [0]},
        {"names": ["a"], "formats": ["<i4"], "offsets": [0], "itemsize": 4, "extra": 1},
        {"names": ["a"], "formats": [["<i4", [2.5]]], "offsets": [0], "itemsize": 40},
        {"names": ["a"], "formats": "<i4", "offsets": [0], "itemsize": 4},
    ],
)
def test_received_dtype_specs_that_are_not_one_are_refused(spec: object) -> None:
    with pytest.raises(SerialisationError, match="received an array of an unknown dtype"):
        _dtype_from(spec)


def test_a_received_dtype_of_python_objects_is_refused() -> None:
    with pytest.raises(SerialisationError, match="Python objects"):
        _dtype_from("|O")
