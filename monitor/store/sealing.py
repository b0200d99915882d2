"""Token rows at rest, the same in every backend: how a blob is bound to its connection.

A token row holds a blob sealed by `crypto.Keyring` with associated data that names the
connection, so a blob copied onto another row fails authentication instead of handing one
connection another's token. SQLite and PostgreSQL seal alike, so a blob moves between
backends unchanged. Here: sealing, opening a row into `StoredTokens`, resealing under the
primary key (rotation) and the start-up message for a key the ring lacks.
"""

from __future__ import annotations

from monitor.errors import StoreKeyError
from monitor.model import StoredTokens, TokenSet
from monitor.store.codec import decode_tokens, encode_tokens
from monitor.store.crypto import Keyring


def token_aad(connection_id: str) -> bytes:
    return b"snowmon:tokens:" + connection_id.encode("utf-8")


def token_what(connection_id: str) -> str:
    return f"token of connection {connection_id!r}"


def seal_tokens(keyring: Keyring, connection_id: str, tokens: TokenSet) -> bytes:
    return keyring.encrypt(encode_tokens(tokens), token_aad(connection_id))


def open_tokens(keyring: Keyring, connection_id: str, version: int, blob: bytes) -> StoredTokens:
    what = token_what(connection_id)
    plaintext = keyring.decrypt(blob, token_aad(connection_id), what=what)
    return StoredTokens(decode_tokens(plaintext, what=what), version)


def check_blob(keyring: Keyring, connection_id: str, blob: bytes) -> None:
    """Decrypt one blob, or raise the error that names its connection."""
    keyring.decrypt(blob, token_aad(connection_id), what=token_what(connection_id))


def reseal(keyring: Keyring, connection_id: str, blob: bytes) -> bytes:
    """The same tokens sealed again under the primary key."""
    aad = token_aad(connection_id)
    return keyring.encrypt(keyring.decrypt(blob, aad, what=token_what(connection_id)), aad)


def missing_key(label: str, key_id: str, keyring: Keyring) -> StoreKeyError:
    """Stored tokens sealed with a key the ring lacks: stop start-up with one clear
    message rather than one unreadable token per connection later."""
    return StoreKeyError(
        f"{label}: stored tokens were encrypted with key id {key_id} which is not in "
        f"encryption_keys (it holds {', '.join(keyring.key_ids)}); add the old key after "
        "the new one to rotate"
    )
