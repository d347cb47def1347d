"""What a run keeps in Redis (pastset.transport.redis_scripts): the Lua sections, key names, script errors.

Every section of redis_store.lua is loaded into a real redis-server (the
session's, on loopback): Redis compiles a script when it is loaded, so one
that does not parse is refused there.
"""

from __future__ import annotations

import re
import uuid
from importlib import resources
from typing import Any

import pytest

from pastset.errors import BY_NAME, ElementDeletedError, PastSetValueError, RemoteError
from pastset.transport.redis_scripts import READ_ONLY, SCRIPTS, Keys, _raise


def _sections() -> dict[str, str]:
    """The sections of redis_store.lua, read here on their own: name -> text."""
    text = resources.files("pastset.transport").joinpath("redis_store.lua").read_text()
    names = re.findall(r"^--! (.+)$", text, flags=re.MULTILINE)
    bodies = re.split(r"^--! .+\n", text, flags=re.MULTILINE)[1:]
    return dict(zip([n.strip() for n in names], bodies, strict=True))


def test_there_is_one_script_per_section_and_the_prelude_is_none_of_them() -> None:
    sections = _sections()
    assert "PRELUDE" in sections and "PRELUDE" not in SCRIPTS
    assert sorted(SCRIPTS) == sorted(set(sections) - {"PRELUDE"})
    assert READ_ONLY <= set(SCRIPTS)


def test_each_script_is_the_prelude_then_its_own_section_only() -> None:
    sections = _sections()
    prelude = sections["PRELUDE"].strip()
    assert prelude
    for name, script in SCRIPTS.items():
        assert "--! " not in script, f"{name} holds a section marker"
        assert script.strip().startswith(prelude), name
        assert script.strip().endswith(sections[name].strip()), name
        for other, body in sections.items():
            if other not in ("PRELUDE", name) and body.strip() not in sections[name]:
                assert body.strip() not in script, f"{name} holds the section {other}"


def test_every_script_loads_into_redis(redis_single: Any) -> None:
    client = redis_single.client()
    try:
        for name, script in SCRIPTS.items():
            sha = client.script_load(script)
            assert client.script_exists(sha) == [True], name
    finally:
        client.close()


def test_keys_of_one_element_share_a_hash_tag_and_the_registry_has_its_own() -> None:
    keys = Keys("r1")
    assert keys.registry == "{ps:r1}:reg"
    assert keys.meta(7) == keys.key(7, "m") == "{ps:r1:e7}:m"
    assert keys.key(7, "d").split("}")[0] == keys.meta(7).split("}")[0]
    assert keys.key(8, "d").split("}")[0] != keys.meta(7).split("}")[0]


def test_the_patterns_find_every_key_of_the_run_and_none_of_a_run_whose_name_extends_it(redis_single: Any) -> None:
    run = f"t{uuid.uuid4().hex[:8]}"
    mine, theirs = Keys(run), Keys(run + "x")
    client = redis_single.client()
    made = [mine.registry, mine.meta(1), mine.key(12, "d"), theirs.registry, theirs.meta(1), theirs.key(12, "d")]
    try:
        for key in made:
            client.set(key, b"1")
        found = {key.decode() for pattern in mine.patterns() for key in client.scan_iter(match=pattern, count=1000)}
        assert found == {mine.registry, mine.meta(1), mine.key(12, "d")}
    finally:
        client.delete(*made)
        client.close()


def test_a_script_error_naming_a_pastset_error_becomes_that_error() -> None:
    with pytest.raises(PastSetValueError) as raised:
        _raise(Exception("PastSetValueError delta must be positive"))
    assert str(raised.value) == "delta must be positive"
    with pytest.raises(ElementDeletedError, match="^gone$"):
        _raise(Exception("ElementDeletedError gone"))


def test_any_other_script_error_is_a_remote_error_that_quotes_redis() -> None:
    assert "OOM" not in BY_NAME
    with pytest.raises(RemoteError, match="Redis refused a PastSet operation: OOM command not allowed"):
        _raise(Exception("OOM command not allowed"))
