"""Bearer tokens and what each may reach, read from MEMORYD_AUTH_TOKEN and
MEMORYD_AUTH_TOKEN_FILE.

MEMORYD_AUTH_TOKEN holds one or more tokens, comma-separated, each with access
to every user. The token file holds one token a line, optionally bound to a
tenant, a set of user ids or user-id prefixes:

    # comments and blank lines are ignored
    3f1c...e9               every user
    9a0b...77 users=alice,bob
    c4d2...1e prefix=acme-
    7e55...0a users=ops-bot prefix=acme-,beta-

A bound token may make calls for a user in `users`, or whose id starts with
one of the `prefix` values, and no call that names no user.

Tokens are kept as SHA-256 digests: a presented token is hashed once and
looked up, so checking takes the same time whatever its value, and no
comparison leaks how much of a token matched. No message here quotes a token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Short tokens can be guessed; 16 characters of hex are 64 bits.
MIN_TOKEN_LENGTH = 16
_GENERATE_HINT = "generate one with `openssl rand -hex 32`"


class TokenConfigError(ValueError):
    """MEMORYD_AUTH_TOKEN or the token file is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What one token may reach: every user, or (bound) only `users` and ids
    starting with one of `prefixes`."""

    users: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @property
    def bound(self) -> bool:
        return bool(self.users or self.prefixes)

    def allows(self, user_id: str) -> bool:
        return user_id in self.users or user_id.startswith(self.prefixes)


UNBOUND = Grant()


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check_token(token: str, where: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenConfigError(
            f"{where}: a token must be at least {MIN_TOKEN_LENGTH} characters; {_GENERATE_HINT}"
        )
    # It travels as an HTTP/2 header value after "Bearer ".
    if not all("!" <= char <= "~" for char in token) or "," in token:
        raise TokenConfigError(
            f"{where}: a token may hold only printable ASCII without spaces or commas; "
            f"{_GENERATE_HINT}"
        )


def parse_env_tokens(value: str) -> list[str]:
    """The tokens of MEMORYD_AUTH_TOKEN (comma-separated)."""
    tokens = [part.strip() for part in value.split(",") if part.strip()]
    if not tokens:
        raise TokenConfigError(
            "MEMORYD_AUTH_TOKEN is set but holds no token: set it to one or more "
            "comma-separated tokens, or unset it to turn authentication off"
        )
    for index, token in enumerate(tokens, 1):
        _check_token(token, f"MEMORYD_AUTH_TOKEN (token {index})")
    return tokens


def _split_values(value: str, where: str, key: str) -> list[str]:
    values = [part.strip() for part in value.split(",")]
    if not value or not all(values):
        raise TokenConfigError(f"{where}: {key}= needs a comma-separated list without blanks")
    return values


def _parse_line(fields: list[str], where: str) -> tuple[str, Grant]:
    token, options = fields[0], fields[1:]
    _check_token(token, where)
    users: set[str] = set()
    prefixes: list[str] = []
    seen: set[str] = set()
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("users", "prefix"):
            raise TokenConfigError(
                f"{where}: unknown option {option.split('=')[0]!r} after the token; "
                "expected users=<id>,<id> or prefix=<prefix>,<prefix>"
            )
        if key in seen:
            raise TokenConfigError(f"{where}: {key}= is given twice; list every value in one")
        seen.add(key)
        if key == "users":
            users.update(_split_values(value, where, key))
        else:
            prefixes.extend(_split_values(value, where, key))
    return token, Grant(users=frozenset(users), prefixes=tuple(prefixes))


def parse_token_file(text: str, *, name: str) -> list[tuple[str, Grant]]:
    """The (token, grant) lines of a token file's text; `name` is used in messages."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        entries.append(_parse_line(fields, f"{name} line {number}"))
    if not entries:
        raise TokenConfigError(
            f"{name} holds no token: add one a line, or unset MEMORYD_AUTH_TOKEN_FILE "
            "to turn authentication off"
        )
    return entries


def read_token_file(path: Path) -> list[tuple[str, Grant]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenConfigError(f"MEMORYD_AUTH_TOKEN_FILE: cannot read {path}: {exc}") from None
    return parse_token_file(text, name=f"MEMORYD_AUTH_TOKEN_FILE {path}")


def build_grants(entries: Iterable[tuple[str, Grant]]) -> dict[bytes, Grant]:
    """Digest → grant. The same token twice with different grants is an error
    (which one applies would be a guess)."""
    grants: dict[bytes, Grant] = {}
    for token, grant in entries:
        digest = token_digest(token)
        if grants.get(digest, grant) != grant:
            raise TokenConfigError(
                "the same token appears twice with different bindings "
                "(MEMORYD_AUTH_TOKEN and MEMORYD_AUTH_TOKEN_FILE, or two lines of the file)"
            )
        grants[digest] = grant
    return grants


def load_grants(*, env_tokens: str | None, token_file: Path | None) -> dict[bytes, Grant]:
    """Every configured token; empty when authentication is off (neither set)."""
    entries: list[tuple[str, Grant]] = []
    if env_tokens is not None:
        entries.extend((token, UNBOUND) for token in parse_env_tokens(env_tokens))
    if token_file is not None:
        entries.extend(read_token_file(token_file))
    return build_grants(entries)
