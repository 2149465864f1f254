"""memoryd.client: MemoryClient and AsyncMemoryClient for the memoryd sidecar.

    from memoryd.client import MemoryClient

    with MemoryClient("localhost:50051") as c:
        c.sessions.append("alice", "chat-1", [{"role": "user", "content": "I'm vegetarian"}])
        c.memories.add("alice", "Alice is vegetarian", topics=["diet"])
        for hit in c.memories.search("what does alice eat?", user_id="alice"):
            print(hit.score, hit.memory.content)

Results are the memoryd.v1 protobuf messages (Memory, Message, SearchResult,
Session, MemoryEvent, Job). Failed calls raise MemorydError subclasses.
"""

from memoryd.client._aio import AsyncMemoryClient
from memoryd.client._channel import NO_RETRY, RetryPolicy
from memoryd.client._sync import MemoryClient
from memoryd.client.convert import kind_name
from memoryd.client.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MemorydError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from memoryd.v1.memory_service_pb2 import Job, Memory, MemoryEvent, SearchResult
from memoryd.v1.session_service_pb2 import Message, Session

__all__ = [
    "NO_RETRY",
    "AlreadyExists",
    "AsyncMemoryClient",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "Job",
    "Memory",
    "MemoryClient",
    "MemoryEvent",
    "MemorydError",
    "Message",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "SearchResult",
    "Session",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "kind_name",
]
