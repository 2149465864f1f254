"""SessionService: protobuf in, one domain call, protobuf out."""

from __future__ import annotations

from typing import Any

from grpc.aio import ServicerContext

from memoryd.v1 import session_service_pb2 as pb
from memoryd.v1 import session_service_pb2_grpc as pb_grpc
from server.api import convert
from server.api.interceptor import encoded_response
from server.models import WindowKind
from server.sessions import SessionService
from server.stores import message_codec

Context = ServicerContext[Any, Any]

_HISTORY_MESSAGES = pb.GetHistoryResponse.DESCRIPTOR.fields_by_name["messages"].number


class SessionServicer(pb_grpc.SessionServiceServicer):
    def __init__(self, sessions: SessionService) -> None:
        self._sessions = sessions

    async def AppendMessages(
        self, request: pb.AppendMessagesRequest, context: Context
    ) -> pb.AppendMessagesResponse:
        result = await self._sessions.append(
            user_id=request.user_id,
            session_id=request.session_id,
            agent_id=request.agent_id,
            messages=[convert.new_message(i, m) for i, m in enumerate(request.messages)],
            ttl=(
                convert.duration_to_timedelta("ttl", request.ttl)
                if request.HasField("ttl")
                else None
            ),
        )
        return pb.AppendMessagesResponse(
            appended_count=len(result.messages),
            session=convert.session_to_pb(result.session),
            messages=[message_codec.to_pb(m) for m in result.messages],
        )

    async def GetHistory(
        self, request: pb.GetHistoryRequest, context: Context
    ) -> pb.GetHistoryResponse:
        bound = request.WhichOneof("window")
        kind = WindowKind(bound) if bound else None
        window = self._sessions.history_window(kind, getattr(request, bound) if bound else 0)
        encoded = await self._sessions.history(
            user_id=request.user_id, session_id=request.session_id, window=window
        )
        # Stored messages are already memoryd.v1.Message encodings: framed as
        # the response's repeated field, they are the response.
        return encoded_response(
            pb.GetHistoryResponse, message_codec.repeated_field(_HISTORY_MESSAGES, encoded)
        )

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        page = await self._sessions.list_sessions(
            user_id=request.user_id,
            agent_id=request.agent_id,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListSessionsResponse(
            sessions=[convert.session_to_pb(s) for s in page.sessions],
            next_page_token=page.next_page_token,
        )

    async def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: Context
    ) -> pb.DeleteSessionResponse:
        deleted = await self._sessions.delete_session(
            user_id=request.user_id, session_id=request.session_id
        )
        return pb.DeleteSessionResponse(deleted_count=deleted)

    async def DeleteUserSessions(
        self, request: pb.DeleteUserSessionsRequest, context: Context
    ) -> pb.DeleteUserSessionsResponse:
        deleted = await self._sessions.delete_user_sessions(user_id=request.user_id)
        return pb.DeleteUserSessionsResponse(deleted_count=deleted)

    async def DeleteSessionsBefore(
        self, request: pb.DeleteSessionsBeforeRequest, context: Context
    ) -> pb.DeleteSessionsBeforeResponse:
        cutoff = (
            convert.timestamp_to_datetime("cutoff", request.cutoff)
            if request.HasField("cutoff")
            else None
        )
        deleted = await self._sessions.delete_sessions_before(
            cutoff, user_id=request.user_id or None, all_users=request.all_users
        )
        return pb.DeleteSessionsBeforeResponse(deleted_count=deleted)
