"""The table of PS* settings: each parser's accepted forms, its limits and the message that says what is allowed.

Loading (files, environment, warnings) is tests/test_settings.py; here each row of
:data:`pastset.settings_spec.SPEC` is checked through the parser it names.
"""

from __future__ import annotations

from typing import Any

import pytest

from pastset.settings_spec import LEVELS, SPEC


def parse(name: str, text: str) -> Any:
    """``text`` as setting ``name``'s parser reads it."""
    return SPEC[name][0](text)


def test_every_setting_has_a_parser_a_textual_default_and_a_meaning() -> None:
    for name, (parser, default, meaning) in SPEC.items():
        assert name.startswith("PS") and name.isupper(), name
        assert callable(parser) and isinstance(default, str), name
        assert meaning.strip(), f"{name} has no meaning for -h"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1073741824", 1 << 30),
        ("1G", 1 << 30),
        ("1g", 1 << 30),
        ("512M", 512 << 20),
        ("512MB", 512 << 20),
        ("512MiB", 512 << 20),
        ("0.5G", 512 << 20),
        (" 2 T ", 2 << 40),
        ("1024K", 1 << 20),
        ("1M", 1 << 20),
    ],
)
def test_sizes_take_binary_units_and_an_optional_b_or_ib(text: str, size: int) -> None:
    assert parse("PSMAXINFLIGHT", text) == size


@pytest.mark.parametrize("text", ["lots", "", "G", "1X", "1e999G"])
def test_a_size_that_is_not_one_names_the_forms_that_are(text: str) -> None:
    with pytest.raises(ValueError, match=r"a size in bytes such as 1G, 512M or 1073741824"):
        parse("PSMAXINFLIGHT", text)


@pytest.mark.parametrize("text", ["1023K", "1048575", "0"])
def test_a_size_below_one_mebibyte_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="at least 1M"):
        parse("PSMAXINFLIGHT", text)


def test_counts_have_their_lower_bound_and_an_optional_count_may_be_empty() -> None:
    assert parse("PSPROCS", "0") == 0
    with pytest.raises(ValueError, match="at least 0"):
        parse("PSPROCS", "-1")
    assert parse("PSSLOTS", "1") == 1
    with pytest.raises(ValueError, match="at least 1"):
        parse("PSSLOTS", "0")
    with pytest.raises(ValueError):
        parse("PSSLOTS", "two")
    assert parse("PSWAITPROCS", "") is None
    assert parse("PSWAITPROCS", "4") == 4
    with pytest.raises(ValueError, match="at least 0"):
        parse("PSWAITPROCS", "-2")


@pytest.mark.parametrize("text", ["1", "yes", "TRUE", "On"])
def test_yes_forms(text: str) -> None:
    assert parse("PSFAILFAST", text) is True


@pytest.mark.parametrize("text", ["", "0", "no", "False", "OFF"])
def test_no_forms(text: str) -> None:
    assert parse("PSFAILFAST", text) is False


def test_neither_yes_nor_no_is_refused() -> None:
    with pytest.raises(ValueError, match="yes or no"):
        parse("PSSTRICT", "maybe")


def test_seconds_must_be_positive() -> None:
    assert parse("PSDEADTIME", "0.25") == 0.25
    for text in ("0", "-3", "nan"):
        with pytest.raises(ValueError, match="positive number of seconds"):
            parse("PSSTALLGRACE", text)


def test_log_levels_are_case_blind_and_a_wrong_one_lists_them_all() -> None:
    assert parse("PSLOGLEVEL", "DEBUG") == "debug"
    with pytest.raises(ValueError) as caught:
        parse("PSLOGLEVEL", "verbose")
    assert all(level in str(caught.value) for level in LEVELS)


def test_stall_policy() -> None:
    assert parse("PSSTALL", "Report") == "report"
    with pytest.raises(ValueError, match="stop or report"):
        parse("PSSTALL", "ignore")


def test_channel_is_auto_off_or_a_port() -> None:
    assert parse("PSCHANNEL", "") == "auto"
    assert parse("PSCHANNEL", " OFF ") == "off"
    assert parse("PSCHANNEL", "1") == "1"
    assert parse("PSCHANNEL", "65535") == "65535"
    for text in ("0", "65536", "-5", "fast"):
        with pytest.raises(ValueError, match="auto, off or a TCP port number"):
            parse("PSCHANNEL", text)


def test_launcher_names_the_ones_there_are() -> None:
    assert parse("PSLAUNCH", "") == "auto"
    assert parse("PSLAUNCH", "SRUN") == "srun"
    with pytest.raises(ValueError, match="auto, ssh, srun, pbsdsh or local"):
        parse("PSLAUNCH", "mpirun")


@pytest.mark.parametrize(
    "text",
    ["", "redis://h:6379", "rediss://u:p@h:6380/2", "REDIS+CLUSTER://a:1,b:2", "rediss+cluster://a:1"],
)
def test_store_urls_that_are_known(text: str) -> None:
    assert parse("PSSTORE", text) == text.strip()


@pytest.mark.parametrize("text", ["redis", "http://h:1", "h:6379", "memcached://h:1"])
def test_other_stores_are_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"redis://HOST:PORT\[/DB\]") as caught:
        parse("PSSTORE", text)
    assert "built-in server" in str(caught.value)


def test_name_server_is_host_and_port() -> None:
    assert parse("PSNS", "") == ""
    assert parse("PSNS", "10.0.0.1:9090") == "10.0.0.1:9090"
    assert parse("PSNS", "::1:9090") == "::1:9090"  # the last colon splits
    for text in ("9090", ":9090", "host:", "host:port"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse("PSNS", text)


def test_web_is_a_port_or_host_and_port() -> None:
    assert parse("PSWEB", "") == ""
    assert parse("PSWEB", "8080") == "8080"
    assert parse("PSWEB", "0.0.0.0:8080") == "0.0.0.0:8080"
    for text in ("web", "host:"):
        with pytest.raises(ValueError, match="PORT or HOST:PORT"):
            parse("PSWEB", text)


def test_free_text_settings_keep_their_text() -> None:
    assert parse("PSSECRET", " a b ") == " a b "
    assert parse("PSBIN", "/x:/y") == "/x:/y"
