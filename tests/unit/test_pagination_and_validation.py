from __future__ import annotations

import pytest

from server.errors import InvalidArgument
from server.pagination import decode_page_token, encode_page_token, page_size
from server.validation import optional_id, require_positive, require_user_id


def test_page_token_round_trips_for_the_same_query() -> None:
    token = encode_page_token(["2026-01-01T00:00:00+00:00", "s1"], query=("sessions", "u", ""))
    assert decode_page_token(token, query=("sessions", "u", "")) == [
        "2026-01-01T00:00:00+00:00",
        "s1",
    ]
    assert decode_page_token("", query=("sessions", "u", "")) is None


@pytest.mark.parametrize("token", ["garbage!", "e30", "bm90IGpzb24"])
def test_malformed_page_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(token, query=("q",))
    assert caught.value.field == "page_token"


def test_page_token_of_another_query_is_refused() -> None:
    token = encode_page_token([1], query=("sessions", "alice", ""))
    with pytest.raises(InvalidArgument, match="different query"):
        decode_page_token(token, query=("sessions", "bob", ""))


def test_page_size_defaults_and_bounds() -> None:
    assert page_size(0) == 50
    assert page_size(7) == 7
    for bad in (-1, 1001):
        with pytest.raises(InvalidArgument):
            page_size(bad)


@pytest.mark.parametrize("bad", ["", "a" * 129, "tab\there", "{tag}"])
def test_user_ids_must_be_present_short_printable_and_braceless(bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        require_user_id(bad, max_length=128)
    assert caught.value.field == "user_id"


def test_optional_ids_may_be_empty_but_not_control_characters() -> None:
    assert optional_id("agent_id", "", max_length=8) == ""
    with pytest.raises(InvalidArgument, match="control"):
        optional_id("agent_id", "a\x00", max_length=8)


def test_positive_bounds_name_the_field() -> None:
    assert require_positive("last_runs", 3, maximum=10) == 3
    with pytest.raises(InvalidArgument, match="last_runs: must be at most 10"):
        require_positive("last_runs", 11, maximum=10)
