"""Cross-field rules: problems that belong to one field but depend on another.

Pydantic reports an error of a model validator at the model, not at a field. These rules
travel as one `PydanticCustomError` of type `snowmon_rules` whose context lists
`(field, message)` pairs; the loader's formatter turns each into its own problem at
`<model>.<field>`, so `slack.bot_token: required ...` reads like any field error.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from pydantic_core import PydanticCustomError

from monitor.model import Grant

RULES_ERROR: Final = "snowmon_rules"

Rule = tuple[str, str]


def raise_rules(rules: Iterable[Rule]) -> None:
    found = list(rules)
    if found:
        detail = "; ".join(f"{field}: {message}" for field, message in found)
        raise PydanticCustomError(RULES_ERROR, "{detail}", {"detail": detail, "rules": found})


CONFIGURABLE_GRANTS: Final = (Grant.PASSWORD, Grant.CLIENT_CREDENTIALS, Grant.AUTHORIZATION_CODE)

_NEEDS: Final[dict[Grant, tuple[str, ...]]] = {
    Grant.PASSWORD: ("client_secret", "username", "password"),
    Grant.CLIENT_CREDENTIALS: ("client_secret",),
    # A public client (PKCE) has no secret: only the client id, which is always required.
    Grant.AUTHORIZATION_CODE: (),
}


def credential_rules(grant: Grant, present: Collection[str]) -> list[Rule]:
    """What the grant needs and what it must not be given, from which credential fields
    are set. Works on raw TOML keys as well as on a validated model, so a connection with
    a bad field elsewhere still hears about a missing credential in the same run."""
    missing = [name for name in _NEEDS[grant] if name not in present]
    rules = [(name, f"required by the {grant} grant") for name in missing]
    if grant is not Grant.PASSWORD:
        rules.extend(
            (name, f"only the password grant uses it, not {grant}; remove it")
            for name in ("username", "password")
            if name in present
        )
    return rules
