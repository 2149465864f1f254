"""`memoryd up` with auth and mTLS on: it still tells when it serves (through
the plaintext health-only port), the image's health check still passes, and a
bad token file stops it before it starts anything."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memoryd.client import MemoryClient
from tests.support.processes import (
    UP_START_TIMEOUT_S,
    MemorydUp,
    free_port,
    is_serving,
    memoryd_env,
    start_up,
    store_processes,
)
from tests.support.tls import make_pki

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def wait_for_line(stack: MemorydUp, line: str) -> None:
    deadline = time.monotonic() + UP_START_TIMEOUT_S
    while line not in stack.log():
        if stack.process.poll() is not None:
            raise AssertionError(f"memoryd up exited before {line!r}:\n{stack.log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {line!r} after {UP_START_TIMEOUT_S} s:\n{stack.log()}")
        time.sleep(0.2)


def test_up_with_mtls_and_a_token_reports_serving_through_the_health_port(
    data_dir: Path,
) -> None:
    pki = make_pki(data_dir.parent)
    token = secrets.token_hex(16)
    health = f"127.0.0.1:{free_port()}"
    tls = {
        "MEMORYD_TLS_CERT": str(pki.server_cert),
        "MEMORYD_TLS_KEY": str(pki.server_key),
        "MEMORYD_TLS_CLIENT_CA": str(pki.ca_cert),
        "MEMORYD_HEALTH_LISTEN": health,
    }
    stack = start_up(data_dir, port=None, MEMORYD_AUTH_TOKEN=token, **tls)
    try:
        wait_for_line(stack, f"memoryd is up: gRPC on {stack.address}")
        assert is_serving(health)
        assert not is_serving(stack.address), "the TLS port answered a plaintext call"
        with MemoryClient(
            stack.address,
            token=token,
            root_certificates=pki.ca_cert.read_bytes(),
            private_key=pki.client_key.read_bytes(),
            certificate_chain=pki.client_cert.read_bytes(),
            timeout=30.0,
        ) as client:
            client.sessions.append("alice", "s1", [{"role": "user", "content": "over mTLS"}])
            assert [m.content for m in client.sessions.history("alice", "s1")] == ["over mTLS"]
        # The image's HEALTHCHECK command, with the container's environment.
        probe = subprocess.run(
            [sys.executable, "-m", "server.health_probe"],
            env=memoryd_env(stack.data_dir, stack.address, **tls),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
    finally:
        # A clean stop is test_stack.py's to check; this one is about auth and TLS.
        stack.stop()
    assert store_processes(stack.data_dir) == []


def test_up_refuses_a_bad_token_file_before_starting_anything(data_dir: Path) -> None:
    tokens = data_dir.parent / "tokens"
    tokens.write_text(f"{secrets.token_hex(16)} tenant=acme\n")
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "up"],
        env=memoryd_env(data_dir, "127.0.0.1:0", MEMORYD_AUTH_TOKEN_FILE=str(tokens)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "line 1: unknown option 'tenant'" in done.stderr
    assert not data_dir.exists(), "stores were started despite the bad setting"
