"""The keyring: AES-256-GCM blobs that name their key, bound to their row."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest

from monitor.errors import StoreError, StoreKeyError
from monitor.secret import Secret
from monitor.store.crypto import Keyring, blob_key_id, generate_key, write_key_file

AAD = b"snowmon:tokens:c1"


def key_id_hex(key: str) -> str:
    return hashlib.sha256(base64.urlsafe_b64decode(key)).digest()[:8].hex()


def test_round_trip_and_blob_layout(key_a: str) -> None:
    ring = Keyring([key_a])

    blob = ring.encrypt(b"secret token json", AAD)

    assert blob[0] == 0x01
    assert blob[1:9].hex() == key_id_hex(key_a) == ring.primary_key_id == blob_key_id(blob)
    assert len(blob) == 1 + 8 + 12 + len(b"secret token json") + 16
    assert b"secret token json" not in blob
    assert ring.decrypt(blob, AAD) == b"secret token json"


def test_every_encryption_uses_a_fresh_nonce(key_a: str) -> None:
    ring = Keyring([key_a])

    blobs = {ring.encrypt(b"same", AAD) for _ in range(100)}

    assert len(blobs) == 100
    assert len({blob[9:21] for blob in blobs}) == 100


def test_blob_bound_to_another_row_fails_authentication(key_a: str) -> None:
    ring = Keyring([key_a])
    blob = ring.encrypt(b"token of c1", AAD)

    with pytest.raises(StoreError, match=r"^token of 'c2' failed authentication: corrupted"):
        ring.decrypt(blob, b"snowmon:tokens:c2", what="token of 'c2'")


@pytest.mark.parametrize(
    "position", [9, 15, 21, 30, -1], ids=["key-id-end", "nonce", "ct", "ct2", "tag"]
)
def test_any_flipped_bit_is_detected(key_a: str, position: int) -> None:
    ring = Keyring([key_a])
    blob = bytearray(ring.encrypt(b"0123456789abcdef", AAD))
    blob[position] ^= 0x01

    with pytest.raises(StoreError, match="failed authentication: corrupted or tampered") as info:
        ring.decrypt(bytes(blob), AAD)

    assert not isinstance(info.value, StoreKeyError)


def test_flipped_key_id_is_an_unknown_key(key_a: str) -> None:
    ring = Keyring([key_a])
    blob = bytearray(ring.encrypt(b"x", AAD))
    blob[1] ^= 0x01

    with pytest.raises(StoreKeyError, match=f"key id {bytes(blob[1:9]).hex()} which is not in"):
        ring.decrypt(bytes(blob), AAD)


@pytest.mark.parametrize(
    "blob", [b"", b"\x01short", b"\x02" + bytes(40)], ids=["empty", "short", "format"]
)
def test_unreadable_blob_is_reported_as_corrupted(key_a: str, blob: bytes) -> None:
    with pytest.raises(StoreError, match="not a sealed blob snowmon can read"):
        Keyring([key_a]).decrypt(blob, AAD)


def test_rotation_old_keys_decrypt_only_the_primary_encrypts(key_a: str, key_b: str) -> None:
    old_blob = Keyring([key_a]).encrypt(b"old", AAD)
    rotated = Keyring([key_b, key_a])

    assert rotated.decrypt(old_blob, AAD) == b"old"
    assert blob_key_id(rotated.encrypt(b"new", AAD)) == key_id_hex(key_b)
    assert rotated.key_ids == [key_id_hex(key_b), key_id_hex(key_a)]


def test_missing_key_names_the_key_id_and_how_to_rotate(key_a: str, key_b: str) -> None:
    blob = Keyring([key_a]).encrypt(b"old", AAD)

    with pytest.raises(StoreKeyError) as info:
        Keyring([key_b]).decrypt(blob, AAD, what="token of connection 'c1'")

    assert str(info.value) == (
        f"token of connection 'c1' was encrypted with key id {key_id_hex(key_a)} which is not "
        f"in encryption_keys (it holds {key_id_hex(key_b)}); "
        "add the old key after the new one to rotate"
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "encryption_keys is empty"),
        (["  "], "encryption key #1 is empty"),
        (["not base64 at all!"], "encryption key #1 is not URL-safe base64"),
        (
            [generate_key(), base64.urlsafe_b64encode(bytes(16)).decode()],
            "key #2 decodes to 16 bytes",
        ),
    ],
    ids=["none", "blank", "not-base64", "aes-128-sized"],
)
def test_bad_keys_are_clear_errors_that_do_not_quote_the_key(keys: list[str], message: str) -> None:
    with pytest.raises(StoreKeyError, match=message) as info:
        Keyring(keys)

    for key in keys:
        if key.strip():
            assert key not in str(info.value)


def test_keys_are_accepted_without_padding_and_with_surrounding_whitespace(key_a: str) -> None:
    sealed = Keyring([key_a]).encrypt(b"x", AAD)

    assert Keyring([f"  {key_a.rstrip('=')}\n"]).decrypt(sealed, AAD) == b"x"


def test_from_secrets_and_repr_hides_keys(key_a: str, key_b: str) -> None:
    ring = Keyring.from_secrets([Secret(key_a), Secret(key_b)])

    assert ring.key_ids == [key_id_hex(key_a), key_id_hex(key_b)]
    assert key_a not in repr(ring)
    assert key_b not in repr(ring)
    assert ring.has_key(key_id_hex(key_b))
    assert not ring.has_key("00" * 8)
    assert not ring.has_key("not hex")


def test_a_single_string_is_not_mistaken_for_a_list_of_keys(key_a: str) -> None:
    with pytest.raises(TypeError):
        Keyring(key_a)


def test_generated_keys_are_distinct_32_byte_keys() -> None:
    keys = {generate_key() for _ in range(50)}

    assert len(keys) == 50
    assert all(len(base64.urlsafe_b64decode(key)) == 32 for key in keys)


def test_write_key_file_is_private_complete_and_usable(tmp_path: Path) -> None:
    path = tmp_path / "snowmon.key"

    key = write_key_file(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key.reveal() + "\n"
    assert Keyring([path.read_text()]).primary_key_id == key_id_hex(key.reveal())
    assert sorted(os.listdir(tmp_path)) == ["snowmon.key"]  # no temporary left behind


def test_write_key_file_never_replaces_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "snowmon.key"
    first = write_key_file(path)

    with pytest.raises(StoreKeyError, match=re.escape(f"key file {path} already exists")):
        write_key_file(path)

    assert path.read_text().strip() == first.reveal()
    assert sorted(os.listdir(tmp_path)) == ["snowmon.key"]


def test_write_key_file_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreKeyError, match=r"cannot write key file .*No such file or directory"):
        write_key_file(tmp_path / "missing" / "snowmon.key")
