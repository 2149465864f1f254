"""MemoryService: protobuf in, one domain call, protobuf out."""

from __future__ import annotations

from typing import Any

from grpc.aio import ServicerContext

from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as pb_grpc
from server.api import memory_convert as convert
from server.api.convert import new_message
from server.errors import InvalidArgument
from server.extraction.service import ExtractionService
from server.memories import MemoryService
from server.memory_models import SearchQuery
from server.search import MemorySearch

Context = ServicerContext[Any, Any]


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    def __init__(
        self, memories: MemoryService, search: MemorySearch, extraction: ExtractionService
    ) -> None:
        self._memories = memories
        self._search = search
        self._extraction = extraction

    async def CreateMemory(
        self, request: pb.CreateMemoryRequest, context: Context
    ) -> pb.CreateMemoryResponse:
        memory = await self._memories.create(
            user_id=request.user_id, draft=convert.draft("", request)
        )
        return pb.CreateMemoryResponse(memory=convert.memory_to_pb(memory))

    async def BatchCreateMemories(
        self, request: pb.BatchCreateMemoriesRequest, context: Context
    ) -> pb.BatchCreateMemoriesResponse:
        for index, item in enumerate(request.requests):
            if item.user_id and item.user_id != request.user_id:
                raise InvalidArgument(
                    f"requests[{index}].user_id", "must be empty or equal to the batch's user_id"
                )
        memories = await self._memories.batch_create(
            user_id=request.user_id,
            drafts=[convert.draft(f"requests[{i}]", r) for i, r in enumerate(request.requests)],
        )
        return pb.BatchCreateMemoriesResponse(memories=[convert.memory_to_pb(m) for m in memories])

    async def GetMemory(
        self, request: pb.GetMemoryRequest, context: Context
    ) -> pb.GetMemoryResponse:
        memory = await self._memories.get(user_id=request.user_id, memory_id=request.id)
        return pb.GetMemoryResponse(memory=convert.memory_to_pb(memory))

    async def GetFact(self, request: pb.GetFactRequest, context: Context) -> pb.GetFactResponse:
        memory = await self._memories.get_fact(user_id=request.user_id, key=request.key)
        return pb.GetFactResponse(memory=convert.memory_to_pb(memory))

    async def ListMemories(
        self, request: pb.ListMemoriesRequest, context: Context
    ) -> pb.ListMemoriesResponse:
        page = await self._memories.list_memories(
            user_id=request.user_id,
            memory_filter=convert.list_filter(request.filters),
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListMemoriesResponse(
            memories=[convert.memory_to_pb(m) for m in page.memories],
            next_page_token=page.next_page_token,
        )

    async def UpdateMemory(
        self, request: pb.UpdateMemoryRequest, context: Context
    ) -> pb.UpdateMemoryResponse:
        memory = await self._memories.update(
            user_id=request.user_id,
            memory_id=request.memory.id,
            fields=list(request.update_mask.paths),
            values=convert.memory_values(request.memory),
            reason=request.reason,
        )
        return pb.UpdateMemoryResponse(memory=convert.memory_to_pb(memory))

    async def DeleteMemory(
        self, request: pb.DeleteMemoryRequest, context: Context
    ) -> pb.DeleteMemoryResponse:
        deleted = await self._memories.delete(
            user_id=request.user_id, memory_id=request.id, reason=request.reason
        )
        return pb.DeleteMemoryResponse(deleted_count=deleted)

    async def DeleteUserMemories(
        self, request: pb.DeleteUserMemoriesRequest, context: Context
    ) -> pb.DeleteUserMemoriesResponse:
        deleted = await self._memories.delete_user(user_id=request.user_id)
        return pb.DeleteUserMemoriesResponse(deleted_count=deleted)

    async def DeleteAllMemories(
        self, request: pb.DeleteAllMemoriesRequest, context: Context
    ) -> pb.DeleteAllMemoriesResponse:
        deleted = await self._memories.delete_all(confirm=request.confirm)
        return pb.DeleteAllMemoriesResponse(deleted_count=deleted)

    async def GetMemoryHistory(
        self, request: pb.GetMemoryHistoryRequest, context: Context
    ) -> pb.GetMemoryHistoryResponse:
        events = await self._memories.history(user_id=request.user_id, memory_id=request.id)
        return pb.GetMemoryHistoryResponse(events=[convert.event_to_pb(e) for e in events])

    async def SearchMemories(
        self, request: pb.SearchMemoriesRequest, context: Context
    ) -> pb.SearchMemoriesResponse:
        hits = await self._search.search(
            user_id=request.user_id,
            query=SearchQuery(
                text=request.query,
                limit=request.limit,
                mode=convert.mode(request.mode),
                filter=convert.search_filter(request),
                min_score=request.min_score,
                recency_weight=request.recency_weight,
            ),
            wait_for_index=request.wait_for_index,
            time_left=context.time_remaining(),
        )
        return pb.SearchMemoriesResponse(
            results=[
                pb.SearchResult(memory=convert.memory_to_pb(hit.memory), score=hit.score)
                for hit in hits
            ]
        )

    async def ExtractMemories(
        self, request: pb.ExtractMemoriesRequest, context: Context
    ) -> pb.ExtractMemoriesResponse:
        job = await self._extraction.extract(
            user_id=request.user_id,
            session_id=request.session_id,
            messages=[new_message(i, m) for i, m in enumerate(request.messages)],
        )
        return pb.ExtractMemoriesResponse(job=convert.job_to_pb(job))

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        job = await self._extraction.get_job(user_id=request.user_id, job_id=request.id)
        return pb.GetJobResponse(job=convert.job_to_pb(job))
