from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from memoryd.v1 import session_service_pb2 as pb
from server.models import Role, StoredMessage
from server.stores import message_codec

MESSAGE = StoredMessage(
    seq=7,
    id="m-7",
    role=Role.TOOL,
    content="Lisbon: 21°C, sunny",
    name="weather",
    run_id="run-3",
    create_time=datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
    token_count=9,
    metadata={"source": "api", "tags": ["a", "b"]},
)


def test_encode_then_decode_keeps_every_field() -> None:
    assert message_codec.decode(message_codec.encode(MESSAGE)) == MESSAGE


def test_the_stored_form_is_the_api_message_that_get_history_returns() -> None:
    wire = pb.Message.FromString(message_codec.encode(MESSAGE))
    assert (wire.role, wire.seq, wire.id, wire.token_count) == ("tool", 7, "m-7", 9)
    assert wire.create_time.ToDatetime(tzinfo=UTC) == MESSAGE.create_time
    assert wire.metadata["source"] == "api"


def test_window_fields_read_run_and_tokens_without_a_full_decode() -> None:
    fields = message_codec.window_fields(message_codec.encode(MESSAGE))
    assert (fields.run_id, fields.token_count) == ("run-3", 9)


def test_framed_entries_parse_as_the_response_protobuf_would_build() -> None:
    # Sizes on each side of the one-, two- and three-byte length prefixes.
    entries = [
        message_codec.encode(replace(MESSAGE, seq=i, content="x" * size))
        for i, size in enumerate([0, 90, 127, 128, 300, 16_383, 16_384, 70_000], start=1)
    ]
    expected = pb.GetHistoryResponse()
    for entry in entries:
        expected.messages.add().MergeFromString(entry)

    wire = message_codec.repeated_field(1, entries)

    assert wire == expected.SerializeToString()
    assert [m.seq for m in pb.GetHistoryResponse.FromString(wire).messages] == list(range(1, 9))
    assert message_codec.repeated_field(1, []) == b""
