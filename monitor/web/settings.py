"""Web settings: the `[web]` section of the configuration as the web app needs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.secret import Secret


@dataclass(frozen=True, slots=True)
class WebSettings:
    """Bearer tokens (read-only and admin), whether `/metrics` needs one, and the public
    base URL (links, and the OAuth `redirect_uri` = `public_url + "/oauth/callback"`)."""

    read_tokens: Sequence[Secret] = ()
    admin_tokens: Sequence[Secret] = ()
    protect_metrics: bool = False
    public_url: str = "http://127.0.0.1:8080"

    def __post_init__(self) -> None:
        if not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url must be an http(s) URL")
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        if self.protect_metrics and not (self.read_tokens or self.admin_tokens):
            raise ValueError("protect_metrics needs read_tokens or admin_tokens")

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/oauth/callback"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")
