"""Encryption at rest: sealing contents before they reach Postgres or Redis.

With MEMORYD_ENCRYPTION_KEY set, message and memory contents, their metadata,
memory history, the messages of ExtractMemories jobs and the Redis session
window are stored as Fernet tokens (AES-128-CBC with HMAC-SHA256, from
`cryptography`). Without a key the Cipher is disabled and every caller takes
its plaintext path, unchanged: they test `cipher.enabled` and nothing else.

Keys and key ids. The setting holds one or more Fernet keys: the first seals,
all open (MultiFernet's rule). Each key has an id, the first 8 bytes of
HMAC-SHA256(key, "memoryd key id"), and every sealed value records the id of
the key that sealed it, so opening picks the key directly, an unknown key is
named in the error, and `memoryd rekey` finds what still needs re-sealing
with one SQL condition.

Stored formats (unambiguous without any key):
- text columns: the token; the row's `key_id` column names the key, NULL
  means the row is plaintext (written before a key was set).
- jsonb columns: a JSON string "<key id, 16 hex>:<token>"; an object or an
  array is plaintext (memoryd never stores a bare string there otherwise).
- Redis window entries: b"\\0" + the 8-byte key id + a 12-byte nonce +
  AES-256-GCM ciphertext and tag, under a key derived from the Fernet key
  (HKDF). Not Fernet: GetHistory opens every entry it returns, and a Fernet
  token costs ~40x an AES-GCM open (Python-level base64, HMAC and CBC
  objects per token vs one call); the window is a cache, rebuilt from
  Postgres, so its format is free to differ. A protobuf encoding never
  starts with a zero byte (field number 0 does not exist).

The blind index (server/blind_index.py) uses a second key per Fernet key,
derived with HKDF, so one secret serves both and rotating a key rotates the
index with it (see index_key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.errors import FailedPrecondition

_ID_LABEL = b"memoryd key id"
_INDEX_INFO = b"memoryd blind index v1"
_WINDOW_INFO = b"memoryd redis window v1"
_NONCE_BYTES = 12
SEALED_MARK = b"\0"  # the first byte of a sealed Redis value
_ID_BYTES = 8


def check_key(key: str) -> str:
    """'' for a valid Fernet key, else what is wrong with it (never the key)."""
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return "is not url-safe base64"
    if len(raw) != 32:
        return f"decodes to {len(raw)} bytes, not 32"
    return ""


def key_id_hex(key_id: int) -> str:
    return (key_id & (2**64 - 1)).to_bytes(_ID_BYTES, "big").hex()


def no_key_error() -> FailedPrecondition:
    return FailedPrecondition(
        "stored data is encrypted but MEMORYD_ENCRYPTION_KEY is not set: set it to "
        "the key(s) the data was written with"
    )


@dataclass(frozen=True, slots=True)
class Key:
    id: int  # signed 64-bit, as Postgres' bigint holds it
    fernet: Fernet
    # The blind index's key: HKDF-SHA256 of the Fernet key (both halves).
    index_key: bytes
    # The Redis window's AES-256-GCM key, derived the same way.
    window: AESGCM
    # The id as stored in Redis entries, and their associated data.
    id_bytes: bytes

    @classmethod
    def from_text(cls, key: str) -> Key:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
        digest = hmac.new(raw, _ID_LABEL, hashlib.sha256).digest()
        return cls(
            id=int.from_bytes(digest[:_ID_BYTES], "big", signed=True),
            fernet=Fernet(key),
            index_key=_derive(raw, _INDEX_INFO),
            window=AESGCM(_derive(raw, _WINDOW_INFO)),
            id_bytes=digest[:_ID_BYTES],
        )


def _derive(raw: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)


class Cipher:
    """Seals and opens contents with the configured keys; disabled without keys."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = [Key.from_text(key) for key in keys]
        self._by_id = {key.id: key for key in self.keys}
        if len(self._by_id) != len(self.keys):
            raise ValueError("MEMORYD_ENCRYPTION_KEY lists the same key twice")
        self.enabled = bool(self.keys)

    @classmethod
    def disabled(cls) -> Cipher:
        return cls([])

    @property
    def current(self) -> Key:
        """The key that seals."""
        if not self.keys:
            raise RuntimeError("the cipher is disabled: nothing seals")
        return self.keys[0]

    @property
    def key_id(self) -> int | None:
        """The sealing key's id; None when disabled (rows stay plaintext)."""
        return self.keys[0].id if self.keys else None

    def key(self, key_id: int) -> Key:
        key = self._by_id.get(key_id)
        if key is not None:
            return key
        if not self.enabled:
            raise no_key_error()
        raise FailedPrecondition(
            f"stored data was encrypted with key {key_id_hex(key_id)}, which is not among "
            "MEMORYD_ENCRYPTION_KEY's keys: the key does not match the data; list the key "
            "that wrote it after the new one"
        )

    # -- text columns (the row's key_id names the key) ---------------------

    def seal(self, text: str) -> str:
        return self.current.fernet.encrypt(text.encode()).decode("ascii")

    def open(self, token: str, key_id: int | None) -> str:
        """The plaintext of a text column; `key_id` None: it is plaintext."""
        if key_id is None:
            return token
        return self._decrypt(token, key_id).decode()

    def open_optional(self, token: str | None, key_id: int | None) -> str | None:
        return None if token is None else self.open(token, key_id)

    # -- jsonb columns (self-describing) ------------------------------------

    def seal_json(self, value: Any) -> str | None:
        """The sealed form of a JSON value (None stays None: nothing to hide)."""
        if value is None:
            return None
        key = self.current
        token = key.fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())
        return f"{key_id_hex(key.id)}:{token.decode('ascii')}"

    def open_json(self, value: Any) -> Any:
        """A jsonb column's value: a sealed string is opened, anything else is plaintext."""
        if not isinstance(value, str):
            return value
        id_hex, _, token = value.partition(":")
        try:
            key_id = int.from_bytes(bytes.fromhex(id_hex), "big", signed=True)
        except ValueError:
            raise FailedPrecondition(
                "a stored JSON value is neither plaintext nor sealed"
            ) from None
        return json.loads(self._decrypt(token, key_id))

    @staticmethod
    def json_key_id(value: Any) -> int | None:
        """The key id of a sealed jsonb value; None for plaintext."""
        if not isinstance(value, str):
            return None
        return int.from_bytes(bytes.fromhex(value.partition(":")[0]), "big", signed=True)

    # -- Redis values (self-describing) -------------------------------------

    def seal_bytes(self, data: bytes) -> bytes:
        key = self.current
        # Random nonces: fine for 2^32 entries a key, far more than a key
        # seals between rotations.
        nonce = os.urandom(_NONCE_BYTES)
        return b"".join(
            (SEALED_MARK, key.id_bytes, nonce, key.window.encrypt(nonce, data, key.id_bytes))
        )

    def open_bytes(self, data: bytes) -> bytes:
        """A Redis value: sealed ones are opened, others returned as they are."""
        if data[:1] != SEALED_MARK:
            return data
        id_bytes = data[1 : 1 + _ID_BYTES]
        key_id = int.from_bytes(id_bytes, "big", signed=True)
        key = self.key(key_id)
        start = 1 + _ID_BYTES
        nonce = data[start : start + _NONCE_BYTES]
        try:
            return key.window.decrypt(nonce, data[start + _NONCE_BYTES :], id_bytes)
        except InvalidTag:
            raise _mismatch(key_id) from None

    # -----------------------------------------------------------------------

    def _decrypt(self, token: str | bytes, key_id: int) -> bytes:
        key = self.key(key_id)
        try:
            return key.fernet.decrypt(token)
        except InvalidToken:
            raise _mismatch(key_id) from None


def _mismatch(key_id: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"stored data does not decrypt with key {key_id_hex(key_id)}: the key does "
        "not match the data, or the data is corrupt"
    )
