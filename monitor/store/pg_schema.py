"""The PostgreSQL store's database side: schema, migrations safe for replicas starting at
once, the statements `postgres.py` runs, and how database failures are worded.

Every replica runs `migrate()` at start-up. The whole run happens in one transaction that
first takes a transaction-scoped advisory lock named after the schema, so replicas that
start together queue behind each other: the first migrates, the others find the schema
current. Times the daemon computes (token expiries, history) are float seconds on the
daemon's clock, as in SQLite; times that decide ownership (leases, heartbeats) are
`timestamptz` from the database's `now()`, the one clock every replica shares.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, TypeAlias
from urllib.parse import urlsplit

import asyncpg

from monitor.errors import StoreError

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

# Ordered migrations: version N is reached by running _MIGRATIONS[N-1], all pending ones in
# one transaction. Append new tuples; never edit a released one.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # key_id (hex) is in clear beside the blob, as in SQLite, so start-up checks and
        # rotation ask an index which keys are in use; the expiry times are in clear so the
        # status API of any replica can show them without decrypting anything.
        """CREATE TABLE tokens (
            connection_id text PRIMARY KEY,
            version bigint NOT NULL,
            key_id text NOT NULL,
            blob bytea NOT NULL,
            access_expires_at double precision NOT NULL,
            refresh_expires_at double precision,
            refresh_issued_at double precision,
            updated_at timestamptz NOT NULL)""",
        "CREATE INDEX tokens_by_key ON tokens (key_id)",
        # Rewritten all day: room on each page lets updates stay HOT (no index churn).
        """CREATE TABLE health (
            connection_id text PRIMARY KEY,
            doc text NOT NULL) WITH (fillfactor = 70)""",
        """CREATE TABLE history (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            connection_id text NOT NULL,
            at double precision NOT NULL,
            kind text NOT NULL,
            outcome text NOT NULL,
            detail text NOT NULL,
            duration double precision,
            status integer)""",
        "CREATE INDEX history_by_connection ON history (connection_id, id)",
        """CREATE TABLE alerts (
            connection_id text NOT NULL,
            alert text NOT NULL,
            doc text NOT NULL,
            PRIMARY KEY (connection_id, alert))""",
        # owner: the replica that queued the notification ('' without replicas); a dead
        # replica's rows are adopted by one live replica (see PostgresStore.outbox_all).
        """CREATE TABLE outbox (
            key text PRIMARY KEY,
            payload text NOT NULL,
            owner text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())""",
        # One row per connection of the fleet; owner NULL = free. Renewals rewrite
        # lease_until only, which no index covers, so they stay HOT on half-empty pages.
        """CREATE TABLE leases (
            connection_id text PRIMARY KEY,
            owner text,
            lease_until timestamptz) WITH (fillfactor = 50)""",
        "CREATE INDEX leases_by_owner ON leases (owner)",
        """CREATE TABLE replicas (
            name text PRIMARY KEY,
            heartbeat_at timestamptz NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now())""",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(schema: str) -> str:
    """A schema name snowmon will quote into SQL: lower-case letters, digits, `_`."""
    if not _IDENTIFIER.fullmatch(schema):
        raise ValueError(
            f"schema {schema!r} must be 1-63 lower-case letters, digits or '_', "
            "not starting with a digit"
        )
    return schema


def quote_schema(schema: str) -> str:
    return f'"{check_schema_name(schema)}"'


async def migrate(conn: Conn, schema: str | None, label: str) -> None:
    """Bring the schema (created if missing) to SCHEMA_VERSION; `conn` is an asyncpg
    connection whose search_path already names `schema`."""
    async with conn.transaction():
        # Keyed by schema: replicas of one fleet queue here, fleets in other schemas of
        # the same database (parallel test runs, say) do not wait for each other.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"snowmon.migrate:{schema or ''}",
        )
        if schema is not None:
            found = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
            if found is None:
                # Not CREATE SCHEMA IF NOT EXISTS: that needs CREATE on the database even
                # when the schema exists, which a least-privilege role lacks.
                await conn.execute(f"CREATE SCHEMA {quote_schema(schema)}")
        exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        if not exists:
            await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        current = await conn.fetchval("SELECT version FROM schema_version")
        if current is None:
            await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{label} has schema version {current}, newer than this snowmon "
                f"understands ({SCHEMA_VERSION}); upgrade snowmon"
            )
        for statements in _MIGRATIONS[current:]:
            for statement in statements:
                await conn.execute(statement)
        # Written even when unchanged: a read-only role or replica then fails here, at
        # start-up, rather than at the first token refresh.
        await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION)


def describe_dsn(dsn: str, schema: str | None) -> str:
    """The DSN without user or password, for messages: `postgresql://host:port/db`."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "PostgreSQL store"
    where = f"PostgreSQL store {parts.scheme}://{host}{port}{parts.path}"
    return f"{where} (schema {schema})" if schema else where


def _advice(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "PostgreSQL did not answer in time: is it overloaded or unreachable?"
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return "Check the user and password of daemon.store."
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "The database does not exist: create it or fix daemon.store."
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return "The role lacks a privilege on snowmon's schema: grant it, or migrate as owner."
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return "PostgreSQL is out of connections: raise max_connections or shrink the pools."
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return "The server is read-only (a standby?): point daemon.store at the primary."
    if isinstance(exc, OSError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return "Is PostgreSQL up and reachable? The pool reconnects by itself once it is."
    return ""


def db_error(label: str, dsn: str, action: str, exc: BaseException) -> StoreError:
    """A `StoreError` naming the store, the action and what to do, never the password."""
    detail = str(exc).rstrip(".") or type(exc).__name__
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if password and len(password) >= 4:  # shorter ones would mangle words, not hide much
        detail = detail.replace(password, "***")
    return StoreError(f"{label}: {action} failed: {detail}. {_advice(exc)}".rstrip())


def expected_db_error(exc: BaseException) -> bool:
    """What a database that went away, refused us or was too slow raises."""
    return isinstance(
        exc,
        asyncpg.PostgresError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | OSError
        | TimeoutError,
    )


# -- statements ---------------------------------------------------------------------------
# Ownership checks use the database clock (`now()`, the start of the transaction) so that
# no replica's clock decides who holds a connection.

# A token write: the version fence and, with a replica name ($8), the lease fence, checked
# in one statement. FOR KEY SHARE on the lease row makes a concurrent claim of this
# connection (FOR UPDATE SKIP LOCKED) skip it until the write is committed, so ownership
# cannot change between the check and the write; this replica's own renewals (UPDATE of
# lease_until, a non-key column) do not wait for it. Returns (lease held or not needed,
# new version or NULL).
SAVE_TOKENS: Final = """
WITH lease AS (
    SELECT 1 FROM leases
    WHERE connection_id = $1 AND owner = $8::text AND lease_until > now()
    FOR KEY SHARE
), allowed AS (
    SELECT $8::text IS NULL OR EXISTS (SELECT FROM lease) AS ok
), updated AS (
    UPDATE tokens SET version = version + 1, key_id = $3, blob = $4,
        access_expires_at = $5, refresh_expires_at = $6, refresh_issued_at = $7,
        updated_at = now()
    WHERE connection_id = $1 AND version = $2 AND $2 > 0 AND (SELECT ok FROM allowed)
    RETURNING version
), inserted AS (
    INSERT INTO tokens (connection_id, version, key_id, blob, access_expires_at,
        refresh_expires_at, refresh_issued_at, updated_at)
    SELECT $1, 1, $3, $4, $5, $6, $7, now() WHERE $2 = 0 AND (SELECT ok FROM allowed)
    ON CONFLICT (connection_id) DO NOTHING
    RETURNING version
)
SELECT (SELECT ok FROM allowed),
    (SELECT version FROM updated UNION ALL SELECT version FROM inserted)
"""

# Returns whether the delete was allowed (lease held, or no replica name in $2).
DELETE_TOKENS: Final = """
WITH lease AS (
    SELECT 1 FROM leases
    WHERE connection_id = $1 AND owner = $2::text AND lease_until > now()
    FOR KEY SHARE
), allowed AS (
    SELECT $2::text IS NULL OR EXISTS (SELECT FROM lease) AS ok
), deleted AS (
    DELETE FROM tokens WHERE connection_id = $1 AND (SELECT ok FROM allowed)
)
SELECT ok FROM allowed
"""

SAVE_HEALTH: Final = """
INSERT INTO health (connection_id, doc) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (connection_id) DO UPDATE SET doc = excluded.doc
"""

# ORDER BY the array position: ids, and so "newest first", follow the order given.
APPEND_HISTORY: Final = """
INSERT INTO history (connection_id, at, kind, outcome, detail, duration, status)
SELECT c, a, k, o, d, du, s
FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::float8[],
    $7::int4[]) WITH ORDINALITY AS u(c, a, k, o, d, du, s, n)
ORDER BY n
"""

# Keep the newest N of each connection just written to ($2 = N - 1): an index range
# delete per connection, so the table never needs a sweep.
PRUNE_HISTORY: Final = """
DELETE FROM history h USING (
    SELECT t.cid, (SELECT id FROM history WHERE connection_id = t.cid
                   ORDER BY id DESC OFFSET $2 LIMIT 1) AS cutoff
    FROM unnest($1::text[]) AS t(cid)
) AS c
WHERE h.connection_id = c.cid AND h.id < c.cutoff
"""

SAVE_ALERTS: Final = """
INSERT INTO alerts (connection_id, alert, doc)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (connection_id, alert) DO UPDATE SET doc = excluded.doc
"""

DELETE_ALERTS: Final = """
DELETE FROM alerts a USING unnest($1::text[], $2::text[]) AS k(c, n)
WHERE a.connection_id = k.c AND a.alert = k.n
"""

OUTBOX_PUT: Final = """
INSERT INTO outbox (key, payload, owner) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET payload = excluded.payload, owner = excluded.owner
"""

OUTBOX_ALL: Final = 'SELECT key, payload FROM outbox ORDER BY key COLLATE "C"'

# Rows of replicas without a heartbeat newer than one lease period ($2 s) become mine ($1);
# the row lock makes each orphan go to exactly one adopter.
OUTBOX_ADOPT: Final = """
WITH adopted AS (
    UPDATE outbox SET owner = $1
    WHERE owner <> $1 AND owner NOT IN (
        SELECT name FROM replicas WHERE heartbeat_at > now() - make_interval(secs => $2))
    RETURNING key, payload
)
SELECT key, payload FROM (
    SELECT key, payload FROM outbox WHERE owner = $1
    UNION ALL SELECT key, payload FROM adopted
) AS mine
ORDER BY key COLLATE "C"
"""
