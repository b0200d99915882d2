"""The error hierarchy. Only `cli.py` turns these into exit codes.

Outcomes of talking to ServiceNow (a rejected token, a 503, a timeout) are not errors:
they are typed results (`model.TokenResult`, `model.ProbeResult`). These exceptions are
for what stops the daemon from doing its job at all.
"""

from __future__ import annotations


class SnowmonError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(SnowmonError):
    """The configuration cannot be used; `problems` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SecretError(SnowmonError):
    """A secret reference (`env:`, `file:`) could not be resolved."""


class StoreError(SnowmonError):
    """The durable store cannot be opened, read or written."""


class StoreKeyError(StoreError):
    """Stored tokens were encrypted with a key the keyring does not hold."""


class StaleWriteError(StoreError):
    """A token write lost a version (fencing) check: someone saved a newer token."""


class LeaseLostError(StoreError):
    """This process no longer owns the connection it tried to write."""
