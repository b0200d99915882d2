"""The schemas of the OpenAPI document: the JSON shapes `render.py` produces.

`additionalProperties: false` everywhere, so a field added to a response without being
documented here fails the fuzz test (schemathesis validates every answer against these).
"""

from __future__ import annotations

from typing import Any, Final

from monitor.model import Grant, HistoryKind, State
from monitor.web.render import STATES_WORST_FIRST

Json = dict[str, Any]

_TIME: Final[Json] = {
    "type": ["string", "null"],
    "format": "date-time",
    "description": "RFC 3339, UTC, milliseconds; null when unknown",
}
_SECONDS: Final[Json] = {"type": ["number", "null"], "description": "seconds"}
_HTTP_STATUS: Final[Json] = {"type": ["integer", "null"], "description": "HTTP status, if any"}
STATE: Final[Json] = {"type": "string", "enum": [s.value for s in STATES_WORST_FIRST]}


def object_of(properties: Json, *, nullable: bool = False) -> Json:
    return {
        "type": ["object", "null"] if nullable else "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


_CONNECTION: Final[Json] = {
    "id": {"type": "string"},
    "instance_url": {"type": "string"},
    "grant": {"type": "string", "enum": [g.value for g in Grant]},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "state": STATE,
    "since": _TIME,
    "consecutive_failures": {"type": "integer", "minimum": 0},
    "consecutive_successes": {"type": "integer", "minimum": 0},
    "last_reason": {"type": "string"},
    "last_error": {"type": "string", "description": "redacted"},
    "last_probe": object_of(
        {
            "at": _TIME,
            "reason": {"type": "string"},
            "duration_seconds": _SECONDS,
            "status": _HTTP_STATUS,
        },
        nullable=True,
    ),
    "access_token_expires_at": _TIME,
    "refresh_token_expires_at": _TIME,
    "refresh_token_issued_at": _TIME,
    "can_renew_refresh_token": {
        "type": "boolean",
        "description": "the grant obtains a fresh refresh token by itself (not authorization_code)",
    },
    "next_probe_at": _TIME,
    "next_refresh_at": _TIME,
    "owner": {"type": "string", "description": "the replica working on it; empty if alone"},
}

_HISTORY_ENTRY: Final[Json] = {
    "at": _TIME,
    "kind": {"type": "string", "enum": [k.value for k in HistoryKind]},
    "outcome": {"type": "string"},
    "detail": {"type": "string", "description": "redacted"},
    "duration_seconds": _SECONDS,
    "status": _HTTP_STATUS,
}

_TOKEN_RESULT: Final[Json] = {
    "ok": {"type": "boolean"},
    "grant": {"type": "string", "enum": [g.value for g in Grant]},
    "failure": {"type": ["string", "null"]},
    "status": _HTTP_STATUS,
    "detail": {"type": "string"},
    "retry_after_seconds": _SECONDS,
    "started_at": _TIME,
    "duration_seconds": {"type": "number"},
    "access_token_expires_at": _TIME,
    "refresh_token_expires_at": _TIME,
    "refresh_token_issued_at": _TIME,
    "scope": {"type": ["string", "null"]},
}

_PROBE_RESULT: Final[Json] = {
    "ok": {"type": "boolean"},
    "reason": {"type": "string"},
    "started_at": _TIME,
    "duration_seconds": {"type": "number"},
    "status": _HTTP_STATUS,
    "detail": {"type": "string"},
    "retry_after_seconds": _SECONDS,
    "rate_limit": object_of(
        {
            "limit": {"type": ["integer", "null"]},
            "reset_at": _TIME,
            "rule": {"type": ["string", "null"]},
        },
        nullable=True,
    ),
}


def schemas() -> Json:
    detail = dict(_CONNECTION, history={"type": "array", "items": ref("HistoryEntry")})
    by_state = {s.value: {"type": "integer", "minimum": 0} for s in State}
    return {
        "Error": object_of(
            {
                "error": {"type": "string", "description": "a stable code, e.g. not_found"},
                "message": {"type": "string", "description": "plain words"},
                "status": {"type": "integer"},
            }
        ),
        "Connection": object_of(_CONNECTION),
        "ConnectionDetail": object_of(detail),
        "HistoryEntry": object_of(_HISTORY_ENTRY),
        "ConnectionList": object_of(
            {
                "items": {"type": "array", "items": ref("Connection")},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
                "next_offset": {"type": ["integer", "null"]},
            }
        ),
        "Summary": object_of(
            {
                "total": {"type": "integer", "minimum": 0},
                "by_state": object_of(by_state),
                "by_label": {
                    "type": "object",
                    "description": "label key → label value → state → count (non-zero only)",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "additionalProperties": {"type": "integer", "minimum": 1},
                        },
                    },
                },
                "refresh_tokens_expiring": {
                    "type": "array",
                    "description": "soonest first; already dead ones have seconds_left <= 0",
                    "items": object_of(
                        {
                            "id": {"type": "string"},
                            "refresh_token_expires_at": _TIME,
                            "seconds_left": {"type": "number"},
                            "can_renew_refresh_token": {"type": "boolean"},
                            "state": STATE,
                        }
                    ),
                },
                "window_seconds": {"type": "number"},
            }
        ),
        "ProbeAnswer": object_of(
            {
                "id": {"type": "string"},
                "result": object_of(_PROBE_RESULT),
                "connection": {"oneOf": [ref("Connection"), {"type": "null"}]},
            }
        ),
        "RefreshAnswer": object_of(
            {
                "id": {"type": "string"},
                "result": object_of(_TOKEN_RESULT),
                "connection": {"oneOf": [ref("Connection"), {"type": "null"}]},
            }
        ),
        "Alive": object_of({"status": {"type": "string", "enum": ["ok"]}}),
        "Ready": object_of(
            {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
            }
        ),
    }
