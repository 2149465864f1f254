"""Token file parsing and the auth and TLS settings' start-time checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.credentials import (
    Grant,
    TokenConfigError,
    load_grants,
    parse_token_file,
    token_digest,
)
from server.settings import Settings
from tests.support.tls import make_pki

TOKEN = "a" * 32
OTHER = "b" * 32


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Settings reads MEMORYD_* from the environment: start from none.
    for name in ("MEMORYD_AUTH_TOKEN", "MEMORYD_AUTH_TOKEN_FILE", "MEMORYD_TLS_CERT"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path


def settings_error(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    return str(caught.value)


def test_token_file_lines_bind_users_and_prefixes() -> None:
    entries = parse_token_file(
        f"# ops\n\n{TOKEN}\n{OTHER} users=alice,bob prefix=acme-,beta-\n", name="f"
    )
    assert entries == [
        (TOKEN, Grant()),
        (OTHER, Grant(users=frozenset({"alice", "bob"}), prefixes=("acme-", "beta-"))),
    ]
    bound = entries[1][1]
    assert bound.bound and not entries[0][1].bound
    assert bound.allows("alice") and bound.allows("acme-7") and bound.allows("beta-")
    assert not bound.allows("carol") and not bound.allows("alice2") and not bound.allows("acme")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no token"),
        ("# only a comment\n", "holds no token"),
        ("short\n", "line 1: a token must be at least 16 characters"),
        (f"{TOKEN} tenant=acme\n", "line 1: unknown option 'tenant'"),
        (f"{TOKEN}\n{OTHER} users=\n", "line 2: users= needs a comma-separated list"),
        (f"{TOKEN} users=a,,b\n", "line 1: users= needs a comma-separated list"),
        (f"{TOKEN} prefix=a prefix=b\n", "line 1: prefix= is given twice"),
        (f"{TOKEN} users\n", "line 1: unknown option 'users'"),
    ],
)
def test_token_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TokenConfigError, match=message):
        parse_token_file(text, name="tokens.txt")


def test_messages_never_quote_a_token() -> None:
    secret = "s3cr3t-" + "x" * 20
    with pytest.raises(TokenConfigError) as caught:
        parse_token_file(f"{secret} bogus=1\n", name="f")
    assert secret not in str(caught.value)


def test_env_tokens_are_comma_separated_and_unbound(workdir: Path) -> None:
    grants = load_grants(env_tokens=f" {TOKEN} , {OTHER}", token_file=None)
    assert grants == {token_digest(TOKEN): Grant(), token_digest(OTHER): Grant()}


def test_the_same_token_bound_two_ways_is_refused(workdir: Path) -> None:
    path = workdir / "tokens"
    path.write_text(f"{TOKEN} users=alice\n")
    with pytest.raises(TokenConfigError, match="appears twice"):
        load_grants(env_tokens=TOKEN, token_file=path)


def test_no_token_setting_means_auth_off(workdir: Path) -> None:
    settings = Settings()
    assert not settings.auth_enabled
    assert load_grants(env_tokens=None, token_file=None) == {}


@pytest.mark.parametrize("value", ["", " , ,"])
def test_an_empty_token_list_is_a_start_error(workdir: Path, value: str) -> None:
    assert "MEMORYD_AUTH_TOKEN is set but holds no token" in settings_error(auth_token=value)


def test_an_unreadable_token_file_is_a_start_error(workdir: Path) -> None:
    message = settings_error(auth_token_file=workdir / "missing")
    assert "MEMORYD_AUTH_TOKEN_FILE: cannot read" in message


def test_a_bad_token_file_line_is_a_start_error_without_the_token(workdir: Path) -> None:
    path = workdir / "tokens"
    path.write_text(f"{TOKEN} users=alice\n{OTHER} group=x\n")
    message = settings_error(auth_token_file=path)
    assert "line 2: unknown option 'group'" in message
    assert OTHER not in message


def test_the_token_is_a_secret_in_settings(workdir: Path) -> None:
    settings = Settings(auth_token=TOKEN)  # type: ignore[arg-type]
    assert settings.auth_enabled
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


def test_tls_key_without_cert_is_a_start_error(workdir: Path) -> None:
    key = workdir / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    message = settings_error(tls_key=key)
    assert "MEMORYD_TLS_KEY is set but MEMORYD_TLS_CERT is not" in message


def test_client_ca_without_tls_is_a_start_error(workdir: Path) -> None:
    ca = workdir / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert "MEMORYD_TLS_CLIENT_CA is set but MEMORYD_TLS_CERT" in settings_error(tls_client_ca=ca)


def test_unreadable_or_non_pem_tls_files_are_start_errors(workdir: Path) -> None:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    assert "MEMORYD_TLS_CERT: " in settings_error(tls_cert=cert, tls_key=key)
    assert "is not a PEM file" in settings_error(tls_cert=cert, tls_key=key)
    message = settings_error(tls_cert=key, tls_key=workdir / "nope.pem")
    assert "MEMORYD_TLS_KEY: cannot read" in message


def test_a_key_that_does_not_match_the_certificate_is_a_start_error(workdir: Path) -> None:
    first, second = make_pki(workdir / "first"), make_pki(workdir / "second")
    message = settings_error(tls_cert=first.server_cert, tls_key=second.server_key)
    assert "are not a certificate chain and its unencrypted private key" in message
    message = settings_error(
        tls_cert=first.server_cert, tls_key=first.server_key, tls_client_ca=first.client_key
    )
    assert "MEMORYD_TLS_CLIENT_CA" in message and "no usable CA certificate" in message
    matching = Settings(
        tls_cert=first.server_cert, tls_key=first.server_key, tls_client_ca=first.ca_cert
    )
    assert matching.tls_client_ca == first.ca_cert
