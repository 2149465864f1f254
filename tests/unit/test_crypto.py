"""The cipher's stored formats, key handling and the blind index, without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError

from server import blind_index
from server.crypto import SEALED_MARK, Cipher, key_id_hex
from server.errors import FailedPrecondition
from server.settings import Settings
from server.stores import message_codec

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def test_a_disabled_cipher_leaves_plaintext_alone_and_refuses_sealed_values() -> None:
    off = Cipher.disabled()
    assert not off.enabled and off.key_id is None
    assert off.open("plain", None) == "plain"
    assert off.open_json({"a": 1}) == {"a": 1}
    assert off.open_bytes(b"\x0aplain") == b"\x0aplain"
    sealed = Cipher([KEY_A])
    with pytest.raises(FailedPrecondition, match="MEMORYD_ENCRYPTION_KEY is not set"):
        off.open(sealed.seal("x"), sealed.key_id)
    with pytest.raises(FailedPrecondition, match="MEMORYD_ENCRYPTION_KEY is not set"):
        off.open_json(sealed.seal_json({"a": 1}))
    with pytest.raises(FailedPrecondition, match="MEMORYD_ENCRYPTION_KEY is not set"):
        off.open_bytes(sealed.seal_bytes(b"x"))


def test_sealed_values_round_trip_and_hide_their_plaintext() -> None:
    cipher = Cipher([KEY_A])
    token = cipher.seal("the secret word")
    assert "secret" not in token and cipher.open(token, cipher.key_id) == "the secret word"
    value = {"note": "secret", "n": [1, 2]}
    sealed_json = cipher.seal_json(value)
    assert isinstance(sealed_json, str) and "secret" not in sealed_json
    assert sealed_json.startswith(key_id_hex(cipher.current.id) + ":")
    assert cipher.open_json(sealed_json) == value
    assert cipher.seal_json(None) is None
    entry = cipher.seal_bytes(b"secret bytes")
    assert entry.startswith(SEALED_MARK) and b"secret" not in entry
    assert cipher.open_bytes(entry) == b"secret bytes"


def test_a_stored_message_encoding_never_starts_like_a_sealed_entry() -> None:
    # Field number 0 does not exist, so no protobuf encoding starts with 0x00.
    from datetime import UTC, datetime

    from server.models import Role, StoredMessage

    message = StoredMessage(
        seq=1,
        id="m",
        role=Role.USER,
        content="",
        name="",
        run_id="",
        create_time=datetime.now(UTC),
        token_count=0,
    )
    assert not message_codec.encode(message).startswith(SEALED_MARK)


def test_rotation_opens_old_values_and_seals_with_the_first_key() -> None:
    old = Cipher([KEY_A])
    rotated = Cipher([KEY_B, KEY_A])
    token = old.seal("hello")
    assert rotated.open(token, old.key_id) == "hello"
    assert rotated.open_json(old.seal_json([1])) == [1]
    assert rotated.open_bytes(old.seal_bytes(b"hi")) == b"hi"
    assert rotated.key_id == Cipher([KEY_B]).key_id != old.key_id


def test_a_wrong_key_names_the_key_the_data_needs() -> None:
    written = Cipher([KEY_A])
    other = Cipher([KEY_B])
    with pytest.raises(FailedPrecondition, match=key_id_hex(written.current.id)) as caught:
        other.open(written.seal("x"), written.key_id)
    assert "does not match the data" in caught.value.message
    # A token that does not verify under the key its id names.
    assert written.key_id is not None
    with pytest.raises(FailedPrecondition, match="does not decrypt"):
        written.open(other.seal("x"), written.key_id)


def test_settings_check_keys_and_say_how_to_make_one(tmp_path: Path) -> None:
    assert Settings(encryption_key=SecretStr(f"{KEY_A}, {KEY_B}")).encryption_keys() == [
        KEY_A,
        KEY_B,
    ]
    with pytest.raises(ValidationError, match=r"Fernet\.generate_key") as caught:
        Settings(encryption_key=SecretStr("not-a-key"))
    assert "not-a-key" not in str(caught.value)  # secrets stay out of errors
    with pytest.raises(ValidationError, match="decodes to 6 bytes"):
        Settings(encryption_key=SecretStr("c2hvcnQh"))
    key_file = tmp_path / "keys"
    key_file.write_text(f"{KEY_B}\n{KEY_A}\n")
    assert Settings(encryption_key_file=key_file).encryption_keys() == [KEY_B, KEY_A]
    with pytest.raises(ValidationError, match="not both"):
        Settings(encryption_key=SecretStr(KEY_A), encryption_key_file=key_file)
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(encryption_key_file=tmp_path / "missing")
    assert Settings().encryption_keys() == []


def test_blind_index_terms_are_stems_with_positions_without_stop_words() -> None:
    assert dict(blind_index.terms("The nurses were nursing; Nurse!")) == {
        "nurs": [2, 4, 5],
    }
    assert blind_index.terms("the and of") == {}


def test_blind_index_hashes_are_per_key_and_per_user() -> None:
    key_a, key_b = Cipher([KEY_A]).current, Cipher([KEY_B]).current
    vector = blind_index.tsvector(key_a, "alice", "nursing nurses")
    [lexeme] = vector.split(" ")
    term, positions = lexeme.split(":")
    assert positions == "1,2" and "nurs" not in vector
    # The query hashes match the stored ones, under every key given.
    assert blind_index.tsquery([key_a], "alice", "nurse") == term
    both = blind_index.tsquery([key_b, key_a], "alice", "nurse").split(" | ")
    assert both[1] == term and both[0] != term
    assert blind_index.tsquery([key_a], "bob", "nurse") != term
    assert blind_index.content_hash(key_a, "alice", "x") != blind_index.content_hash(
        key_a, "bob", "x"
    )


def test_a_tampered_window_entry_is_refused() -> None:
    cipher = Cipher([KEY_A])
    entry = cipher.seal_bytes(b"window entry")
    tampered = entry[:-1] + bytes([entry[-1] ^ 1])
    with pytest.raises(FailedPrecondition, match="does not decrypt"):
        cipher.open_bytes(tampered)
    with pytest.raises(FailedPrecondition, match="does not match the data"):
        Cipher([KEY_B]).open_bytes(entry)
