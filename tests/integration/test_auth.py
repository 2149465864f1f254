"""Bearer-token auth, tenant-bound tokens, reflection and TLS/mTLS on a real
server over a socket, through the raw stubs, the Python client and grpcurl."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memoryd.client import NO_RETRY, AsyncMemoryClient, PermissionDenied, Unauthenticated
from memoryd.client import Unavailable as ClientUnavailable
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as pb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.api.app import RunningServer, start_server
from server.resources import Resources
from server.stack_file import StoreUrls
from tests.e2e.test_sessions_e2e import GRPCURL
from tests.integration.conftest import make_settings
from tests.support.processes import scratch_dir
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
ALICE, BOB, CAROL = f"alice-{RUN}", f"bob-{RUN}", f"carol-{RUN}"
PREFIX = f"acme-{RUN}-"
# Two unbound tokens from MEMORYD_AUTH_TOKEN; two bound ones from the file.
FULL, FULL_2 = secrets.token_hex(16), secrets.token_hex(16)
LISTED, PREFIXED = secrets.token_hex(16), secrets.token_hex(16)

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def history(user_id: str) -> pb.GetHistoryRequest:
    return pb.GetHistoryRequest(user_id=user_id, session_id="s")


def append(user_id: str) -> pb.AppendMessagesRequest:
    return pb.AppendMessagesRequest(
        user_id=user_id, session_id="s", messages=[pb.Message(role="user", content="hello")]
    )


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@contextlib.asynccontextmanager
async def serving(
    store_urls: StoreUrls, resources: Resources, **overrides: object
) -> AsyncIterator[RunningServer]:
    """A server of its own on the session's stores, with settings checked as at start."""
    settings = make_settings(store_urls, resources.settings.data_dir, **overrides)
    running = await start_server(settings, resources)
    await running.health.check_once()
    try:
        yield running
    finally:
        await running.stop(grace=1.0)


@pytest.fixture(scope="module")
def auth_dir() -> Iterator[Path]:
    with scratch_dir("memoryd-auth-") as path:
        (path / "tokens").write_text(
            f"# tenants\n{LISTED} users={ALICE},{BOB}\n\n{PREFIXED} prefix={PREFIX}\n"
        )
        yield path


@pytest.fixture(scope="module")
def pki(auth_dir: Path) -> Pki:
    return make_pki(auth_dir)


@pytest.fixture(scope="module")
async def auth_server(
    store_urls: StoreUrls, resources: Resources, auth_dir: Path
) -> AsyncIterator[RunningServer]:
    async with serving(
        store_urls,
        resources,
        auth_token=f"{FULL}, {FULL_2}",
        auth_token_file=auth_dir / "tokens",
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def auth_channel(auth_server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        yield channel


@pytest.fixture
def sessions(auth_channel: grpc.aio.Channel) -> session_grpc.SessionServiceAsyncStub:
    return session_grpc.SessionServiceStub(auth_channel)


@pytest.fixture
def memories(auth_channel: grpc.aio.Channel) -> memory_grpc.MemoryServiceAsyncStub:
    return memory_grpc.MemoryServiceStub(auth_channel)


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRPCURL, *args], capture_output=True, text=True, timeout=30)


# --- tokens -------------------------------------------------------------------


async def test_a_call_without_a_token_is_unauthenticated_and_says_what_to_send(
    sessions: session_grpc.SessionServiceAsyncStub,
) -> None:
    error = await rpc_error(sessions.GetHistory(history(ALICE)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <token>" in (error.details() or "")


@pytest.mark.parametrize(
    "value",
    [f"Bearer {secrets.token_hex(16)}", f"Bearer {FULL}x", f"Basic {FULL}", FULL],
    ids=["unknown", "longer", "basic-scheme", "no-scheme"],
)
async def test_a_wrong_or_malformed_token_is_unauthenticated(
    sessions: session_grpc.SessionServiceAsyncStub, value: str
) -> None:
    error = await rpc_error(
        sessions.AppendMessages(append(ALICE), metadata=(("authorization", value),))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert FULL not in (error.details() or "")


@pytest.mark.parametrize("token", [FULL, FULL_2], ids=["first", "second"])
async def test_each_configured_token_is_accepted(
    sessions: session_grpc.SessionServiceAsyncStub, token: str
) -> None:
    user_id = f"user-{uuid.uuid4().hex[:12]}"
    await sessions.AppendMessages(append(user_id), metadata=bearer(token))
    reply = await sessions.GetHistory(history(user_id), metadata=bearer(token))
    assert [m.content for m in reply.messages] == ["hello"]


async def test_the_bearer_scheme_is_case_insensitive(
    sessions: session_grpc.SessionServiceAsyncStub,
) -> None:
    await sessions.ListSessions(
        pb.ListSessionsRequest(user_id=ALICE), metadata=(("authorization", f"bearer {FULL}"),)
    )


async def test_health_needs_no_token(auth_channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(auth_channel)
    checked = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    watch = stub.Watch(health_pb2.HealthCheckRequest(service="memoryd.v1.SessionService"))
    first = await watch.read()
    watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


# --- tenant-bound tokens --------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "user_id"),
    [(LISTED, ALICE), (LISTED, BOB), (PREFIXED, PREFIX + "7")],
    ids=["users-first", "users-second", "prefix"],
)
async def test_a_bound_token_may_call_for_its_users(
    sessions: session_grpc.SessionServiceAsyncStub, token: str, user_id: str
) -> None:
    await sessions.AppendMessages(append(user_id), metadata=bearer(token))
    reply = await sessions.GetHistory(history(user_id), metadata=bearer(token))
    assert reply.messages


@pytest.mark.parametrize(
    ("token", "user_id"),
    [(LISTED, CAROL), (LISTED, ALICE + "x"), (PREFIXED, f"acme-other-{RUN}"), (PREFIXED, CAROL)],
    ids=["users-other", "users-longer-id", "prefix-other", "prefix-unrelated"],
)
async def test_a_bound_token_is_denied_other_users_and_writes_nothing(
    sessions: session_grpc.SessionServiceAsyncStub, token: str, user_id: str
) -> None:
    error = await rpc_error(sessions.AppendMessages(append(user_id), metadata=bearer(token)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    details = error.details() or ""
    assert repr(user_id) in details and "bound" in details
    listed = await sessions.ListSessions(
        pb.ListSessionsRequest(user_id=user_id), metadata=bearer(FULL)
    )
    assert not listed.sessions


async def test_a_bound_token_is_denied_calls_that_name_no_user(
    sessions: session_grpc.SessionServiceAsyncStub,
    memories: memory_grpc.MemoryServiceAsyncStub,
) -> None:
    confirm = "delete all memories of all users"
    calls = [
        memories.DeleteAllMemories(
            mpb.DeleteAllMemoriesRequest(confirm=confirm), metadata=bearer(LISTED)
        ),
        sessions.DeleteSessionsBefore(
            pb.DeleteSessionsBeforeRequest(
                cutoff=timestamp_pb2.Timestamp(seconds=1), all_users=True
            ),
            metadata=bearer(PREFIXED),
        ),
        sessions.DeleteSessionsBefore(
            pb.DeleteSessionsBeforeRequest(
                cutoff=timestamp_pb2.Timestamp(seconds=1), user_id=ALICE, all_users=True
            ),
            metadata=bearer(LISTED),
        ),
        sessions.ListSessions(pb.ListSessionsRequest(), metadata=bearer(LISTED)),
    ]
    for call in calls:
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "names no user_id" in (error.details() or "")


async def test_a_batch_with_an_item_outside_the_tenant_is_denied_whole(
    memories: memory_grpc.MemoryServiceAsyncStub,
) -> None:
    request = mpb.BatchCreateMemoriesRequest(
        user_id=ALICE,
        requests=[
            mpb.CreateMemoryRequest(memory=mpb.Memory(content="likes tea")),
            mpb.CreateMemoryRequest(user_id=CAROL, memory=mpb.Memory(content="likes coffee")),
        ],
    )
    error = await rpc_error(memories.BatchCreateMemories(request, metadata=bearer(LISTED)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "requests[1].user_id" in (error.details() or "")
    for user_id in (ALICE, CAROL):
        listed = await memories.ListMemories(
            mpb.ListMemoriesRequest(user_id=user_id), metadata=bearer(FULL)
        )
        assert not listed.memories


async def test_the_python_client_raises_typed_auth_errors(auth_server: RunningServer) -> None:
    async with AsyncMemoryClient(auth_server.address, retry=NO_RETRY) as anonymous:
        with pytest.raises(Unauthenticated, match="authorization: Bearer"):
            await anonymous.sessions.history(ALICE, "s")
    async with AsyncMemoryClient(auth_server.address, token=LISTED) as bound:
        assert await bound.memories.get_user_memories(ALICE) == []
        with pytest.raises(PermissionDenied) as caught:
            await bound.memories.add(CAROL, "likes coffee")
        assert caught.value.field == "user_id"
        assert caught.value.reason == "PERMISSION_DENIED"


# --- reflection -------------------------------------------------------------------


async def test_grpcurl_lists_and_calls_with_a_token_and_not_without(
    auth_server: RunningServer,
) -> None:
    address = auth_server.address
    refused = await asyncio.to_thread(grpcurl, "-plaintext", address, "list")
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr or "authorization" in refused.stderr
    header = f"authorization: Bearer {PREFIXED}"
    listed = await asyncio.to_thread(grpcurl, "-plaintext", "-H", header, address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "memoryd.v1.SessionService" in listed.stdout.split()
    body = json.dumps(
        {
            "user_id": PREFIX + "cli",
            "session_id": "s",
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    called = await asyncio.to_thread(
        grpcurl,
        "-plaintext",
        "-H",
        header,
        "-d",
        body,
        address,
        "memoryd.v1.SessionService/AppendMessages",
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["appended_count"] == 1


async def test_reflection_switched_off_lists_nothing(
    store_urls: StoreUrls, resources: Resources
) -> None:
    async with serving(store_urls, resources, reflection=False) as running:
        listed = await asyncio.to_thread(grpcurl, "-plaintext", running.address, "list")
        assert listed.returncode != 0
        assert "reflection" in listed.stderr.lower()
        # The API itself still answers.
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = session_grpc.SessionServiceStub(channel)
            await stub.ListSessions(pb.ListSessionsRequest(user_id=ALICE))


# --- TLS and mTLS -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def mtls_server(
    store_urls: StoreUrls, resources: Resources, pki: Pki
) -> AsyncIterator[RunningServer]:
    async with serving(
        store_urls,
        resources,
        auth_token=FULL,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca_cert,
        health_listen="127.0.0.1:0",
    ) as running:
        yield running


async def test_mtls_with_a_client_certificate_and_token_succeeds(
    mtls_server: RunningServer, pki: Pki
) -> None:
    async with AsyncMemoryClient(
        mtls_server.address,
        token=FULL,
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    ) as client:
        user_id = f"user-{uuid.uuid4().hex[:12]}"
        await client.sessions.append(user_id, "s", [{"role": "user", "content": "over mTLS"}])
        assert [m.content for m in await client.sessions.history(user_id, "s")] == ["over mTLS"]


async def test_mtls_with_a_certificate_but_no_token_is_unauthenticated(
    mtls_server: RunningServer, pki: Pki
) -> None:
    async with AsyncMemoryClient(
        mtls_server.address,
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
        retry=NO_RETRY,
    ) as client:
        with pytest.raises(Unauthenticated):
            await client.sessions.history(ALICE, "s")


@pytest.mark.parametrize("tls", [True, False], ids=["tls-without-client-cert", "plaintext"])
async def test_mtls_refuses_clients_without_a_certificate(
    mtls_server: RunningServer, pki: Pki, tls: bool
) -> None:
    root = pki.ca_cert.read_bytes() if tls else None
    async with AsyncMemoryClient(
        mtls_server.address, token=FULL, root_certificates=root, retry=NO_RETRY, timeout=5.0
    ) as client:
        with pytest.raises(ClientUnavailable):
            await client.sessions.history(ALICE, "s")


async def test_the_health_port_answers_in_plaintext_beside_mtls(
    mtls_server: RunningServer,
) -> None:
    assert mtls_server.health_address is not None
    async with grpc.aio.insecure_channel(mtls_server.health_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        checked = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        # Only health is served there.
        error = await rpc_error(
            session_grpc.SessionServiceStub(channel).ListSessions(
                pb.ListSessionsRequest(user_id=ALICE), metadata=bearer(FULL)
            )
        )
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_grpcurl_over_mtls_with_a_token(mtls_server: RunningServer, pki: Pki) -> None:
    listed = await asyncio.to_thread(
        grpcurl,
        "-cacert",
        str(pki.ca_cert),
        "-cert",
        str(pki.client_cert),
        "-key",
        str(pki.client_key),
        "-H",
        f"authorization: Bearer {FULL}",
        mtls_server.address,
        "list",
    )
    assert listed.returncode == 0, listed.stderr
    assert "memoryd.v1.MemoryService" in listed.stdout.split()
