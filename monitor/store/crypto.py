"""Tokens at rest: a keyring of AES-256-GCM keys, the first one primary.

A sealed blob is `format (1 byte) | key id (8) | nonce (12) | ciphertext + tag`. The key
id is the first 8 bytes of SHA-256 of the key, so a blob names the key that sealed it
without revealing it. Rotation: put the new key first and keep the old ones after it;
every key in the ring decrypts, only the primary encrypts. The caller passes associated
data that names the row (connection id), so a blob copied onto another row fails
authentication instead of handing one connection another's token.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from monitor.errors import StoreError, StoreKeyError
from monitor.secret import Secret

FORMAT_AES256GCM: Final = 0x01
KEY_BYTES: Final = 32
KEY_ID_BYTES: Final = 8
NONCE_BYTES: Final = 12
_HEADER_BYTES: Final = 1 + KEY_ID_BYTES + NONCE_BYTES
_TAG_BYTES: Final = 16


def key_id_of(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


def _decode_key(text: str, position: int) -> bytes:
    # Say which key is wrong and how, never what it holds: the message ends up in logs.
    stripped = text.strip()
    if not stripped:
        raise StoreKeyError(f"encryption key #{position} is empty")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise StoreKeyError(
            f"encryption key #{position} is not URL-safe base64; "
            "a key is 32 random bytes, base64url-encoded (44 characters)"
        ) from None
    if len(raw) != KEY_BYTES:
        raise StoreKeyError(
            f"encryption key #{position} decodes to {len(raw)} bytes; AES-256 needs {KEY_BYTES}"
        )
    return raw


class Keyring:
    """Seals and opens token blobs; the first key encrypts, every key decrypts."""

    __slots__ = ("_ciphers", "_primary_cipher", "_primary_id")

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str):
            raise TypeError("Keyring takes a sequence of key strings, not one string")
        if not keys:
            raise StoreKeyError("encryption_keys is empty: at least one key is needed")
        self._ciphers: dict[bytes, AESGCM] = {}
        for position, text in enumerate(keys, start=1):
            raw = _decode_key(text, position)
            # A repeated key is harmless; the first occurrence keeps its place.
            self._ciphers.setdefault(key_id_of(raw), AESGCM(raw))
        self._primary_id = next(iter(self._ciphers))
        self._primary_cipher = self._ciphers[self._primary_id]

    @classmethod
    def from_secrets(cls, keys: Sequence[Secret]) -> Keyring:
        return cls([key.reveal() for key in keys])

    def __repr__(self) -> str:
        return f"Keyring(primary={self.primary_key_id}, keys={len(self._ciphers)})"

    @property
    def primary_key_id(self) -> str:
        return self._primary_id.hex()

    @property
    def key_ids(self) -> list[str]:
        """Hex ids of every key, primary first (safe to log)."""
        return [kid.hex() for kid in self._ciphers]

    def has_key(self, key_id_hex: str) -> bool:
        try:
            return bytes.fromhex(key_id_hex) in self._ciphers
        except ValueError:
            return False

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._primary_cipher.encrypt(nonce, plaintext, aad)
        return bytes((FORMAT_AES256GCM,)) + self._primary_id + nonce + sealed

    def decrypt(self, blob: bytes, aad: bytes, *, what: str = "encrypted value") -> bytes:
        """Open `blob`; `what` names it in errors ("token of connection 'x'")."""
        if len(blob) < _HEADER_BYTES + _TAG_BYTES or blob[0] != FORMAT_AES256GCM:
            raise StoreError(f"{what} is not a sealed blob snowmon can read: corrupted")
        kid = blob[1 : 1 + KEY_ID_BYTES]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise StoreKeyError(
                f"{what} was encrypted with key id {kid.hex()} which is not in "
                f"encryption_keys (it holds {', '.join(self.key_ids)}); "
                "add the old key after the new one to rotate"
            )
        nonce = blob[1 + KEY_ID_BYTES : _HEADER_BYTES]
        try:
            return cipher.decrypt(nonce, blob[_HEADER_BYTES:], aad)
        except InvalidTag:
            raise StoreError(f"{what} failed authentication: corrupted or tampered") from None


def blob_key_id(blob: bytes) -> str:
    """The hex id of the key that sealed `blob` (readable without any key)."""
    return blob[1 : 1 + KEY_ID_BYTES].hex()


def generate_key() -> str:
    """A fresh key: 32 random bytes, URL-safe base64 (44 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def write_key_file(path: Path) -> Secret:
    """Create `path` holding a new key, mode 0600, never replacing an existing file.

    The key is written to a private temporary file and hard-linked into place, so the
    path either does not exist or holds a complete, fsync'd key: a crash never leaves a
    half-written key that would then encrypt tokens nobody can read back.
    """
    key = generate_key()
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, (key + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            raise StoreKeyError(f"key file {path} already exists; not replacing it") from None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StoreKeyError(f"cannot write key file {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return Secret(key)
