"""SessionService over a real gRPC socket: statuses, error details, health."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as pb
from memoryd.v1 import session_service_pb2_grpc as session_grpc

pytestmark = pytest.mark.integration

if TYPE_CHECKING:
    Stub = session_grpc.SessionServiceAsyncStub


def user(content: str, **fields: object) -> pb.Message:
    return pb.Message(role="user", content=content, **fields)  # type: ignore[arg-type]


async def expect_error(
    call: object, code: grpc.StatusCode, field: str | None = None
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    error = caught.value
    assert error.code() == code, error.details()
    if field is not None:
        assert field in (error.details() or "")
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert info.domain == "memoryd"
        assert info.metadata["field"] == field
    return error


async def test_append_then_read_history(session_stub: Stub, user_id: str) -> None:
    reply = await session_stub.AppendMessages(
        pb.AppendMessagesRequest(
            user_id=user_id,
            session_id="trip",
            agent_id="planner",
            messages=[
                user("I want to visit Lisbon", id="m1"),
                pb.Message(role="assistant", content="When?", metadata={"model": "x"}),
            ],
            ttl=duration_pb2.Duration(seconds=600),
        )
    )
    assert reply.appended_count == 2
    assert reply.session.message_count == 2
    assert reply.session.ttl.seconds == 600
    assert [m.seq for m in reply.messages] == [1, 2]
    assert reply.messages[0].id == "m1" and reply.messages[1].id
    history = await session_stub.GetHistory(
        pb.GetHistoryRequest(user_id=user_id, session_id="trip", last_messages=5)
    )
    assert [(m.role, m.content) for m in history.messages] == [
        ("user", "I want to visit Lisbon"),
        ("assistant", "When?"),
    ]
    assert history.messages[1].metadata["model"] == "x"
    assert history.messages[0].create_time.seconds > 0


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.AppendMessagesRequest(session_id="s", messages=[user("x")]), "user_id"),
        (pb.AppendMessagesRequest(user_id="u", messages=[user("x")]), "session_id"),
        (pb.AppendMessagesRequest(user_id="u", session_id="s"), "messages"),
        (
            pb.AppendMessagesRequest(
                user_id="u", session_id="s", messages=[pb.Message(role="wizard", content="x")]
            ),
            "messages[0].role",
        ),
        (
            pb.AppendMessagesRequest(
                user_id="u", session_id="s", messages=[user("x" * (64 * 1024 + 1))]
            ),
            "messages[0].content",
        ),
        (
            pb.AppendMessagesRequest(user_id="u" * 129, session_id="s", messages=[user("x")]),
            "user_id",
        ),
        (
            pb.AppendMessagesRequest(
                user_id="u",
                session_id="s",
                messages=[user("x")],
                ttl=duration_pb2.Duration(seconds=-1),
            ),
            "ttl",
        ),
        (pb.AppendMessagesRequest(user_id="{u}", session_id="s", messages=[user("x")]), "user_id"),
    ],
)
async def test_bad_appends_are_invalid_argument_naming_the_field(
    session_stub: Stub, request_: pb.AppendMessagesRequest, field: str
) -> None:
    await expect_error(
        session_stub.AppendMessages(request_), grpc.StatusCode.INVALID_ARGUMENT, field
    )


async def test_failed_append_loses_nothing_stored(session_stub: Stub, user_id: str) -> None:
    await session_stub.AppendMessages(
        pb.AppendMessagesRequest(user_id=user_id, session_id="s", messages=[user("kept", id="a")])
    )
    await expect_error(
        session_stub.AppendMessages(
            pb.AppendMessagesRequest(
                user_id=user_id, session_id="s", messages=[user("new", id="b"), user("dup", id="a")]
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    history = await session_stub.GetHistory(pb.GetHistoryRequest(user_id=user_id, session_id="s"))
    assert [m.content for m in history.messages] == ["kept"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GetHistoryRequest(session_id="s"), "user_id"),
        (pb.GetHistoryRequest(user_id="u"), "session_id"),
        (pb.GetHistoryRequest(user_id="u", session_id="s", last_messages=0), "last_messages"),
        (pb.GetHistoryRequest(user_id="u", session_id="s", last_runs=-1), "last_runs"),
        (pb.GetHistoryRequest(user_id="u", session_id="s", max_tokens=10**9), "max_tokens"),
    ],
)
async def test_bad_history_requests(
    session_stub: Stub, request_: pb.GetHistoryRequest, field: str
) -> None:
    await expect_error(session_stub.GetHistory(request_), grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_list_sessions_paginates_and_rejects_bad_tokens(
    session_stub: Stub, user_id: str
) -> None:
    for i in range(3):
        await session_stub.AppendMessages(
            pb.AppendMessagesRequest(user_id=user_id, session_id=f"s{i}", messages=[user("x")])
        )
    first = await session_stub.ListSessions(pb.ListSessionsRequest(user_id=user_id, page_size=2))
    assert [s.session_id for s in first.sessions] == ["s2", "s1"]
    second = await session_stub.ListSessions(
        pb.ListSessionsRequest(user_id=user_id, page_size=2, page_token=first.next_page_token)
    )
    assert [s.session_id for s in second.sessions] == ["s0"]
    assert second.next_page_token == ""
    await expect_error(
        session_stub.ListSessions(pb.ListSessionsRequest(user_id=user_id, page_token="garbage!")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )
    await expect_error(
        session_stub.ListSessions(pb.ListSessionsRequest(user_id=user_id, page_size=5000)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )


async def test_deletes_and_their_errors(session_stub: Stub, user_id: str) -> None:
    await session_stub.AppendMessages(
        pb.AppendMessagesRequest(user_id=user_id, session_id="s", messages=[user("x")])
    )
    await expect_error(
        session_stub.DeleteSession(pb.DeleteSessionRequest(user_id=user_id, session_id="nope")),
        grpc.StatusCode.NOT_FOUND,
    )
    # Another user cannot delete it either.
    await expect_error(
        session_stub.DeleteSession(pb.DeleteSessionRequest(user_id=user_id + "x", session_id="s")),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        session_stub.DeleteUserSessions(pb.DeleteUserSessionsRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "user_id",
    )
    await expect_error(
        session_stub.DeleteSessionsBefore(pb.DeleteSessionsBeforeRequest(user_id=user_id)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "cutoff",
    )
    await expect_error(
        session_stub.DeleteSessionsBefore(
            pb.DeleteSessionsBeforeRequest(cutoff=timestamp_pb2.Timestamp(seconds=1))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "user_id",
    )
    await expect_error(
        session_stub.DeleteSessionsBefore(
            pb.DeleteSessionsBeforeRequest(
                user_id=user_id, cutoff=timestamp_pb2.Timestamp(seconds=2**40)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "cutoff",
    )
    deleted = await session_stub.DeleteSession(
        pb.DeleteSessionRequest(user_id=user_id, session_id="s")
    )
    assert deleted.deleted_count == 1


async def test_request_id_is_echoed_on_errors(session_stub: Stub) -> None:
    error = await expect_error(
        session_stub.GetHistory(pb.GetHistoryRequest(), metadata=(("x-request-id", "req-42"),)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    trailers: list[tuple[str, object]] = list(error.trailing_metadata() or ())  # type: ignore[arg-type]
    assert ("x-request-id", "req-42") in trailers


async def test_health_serving_and_memory_service_on_the_same_server(
    channel: grpc.aio.Channel,
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "memoryd.v1.SessionService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    memory = memory_grpc.MemoryServiceStub(channel)
    await expect_error(
        memory.ExtractMemories(mpb.ExtractMemoriesRequest(user_id="u", session_id="s")),
        grpc.StatusCode.NOT_FOUND,
    )
