"""A fake Slack: the Web API methods snowmon uses, and an incoming webhook, on 127.0.0.1.

It answers like Slack does where snowmon can tell the difference:
- `chat.postMessage` takes a channel name or id, answers the channel *id* and a `ts`;
  with `thread_ts` it is a reply, and the thread must exist;
- `chat.update` wants the channel id (a name is `channel_not_found`) and an existing ts;
- a missing or wrong bot token is `invalid_auth` (HTTP 200, `ok: false`);
- Block Kit limits are checked (50 blocks, 3,000 characters a section, 150 a header,
  10 fields) and break as `invalid_blocks`; a message without `text` is refused;
- the webhook answers `ok` as text/plain, `invalid_token` (403) for a wrong path.

Faults are scripted: `fail_next(...)` answers the next requests with a status, an error
code, a Retry-After or a delay; `outage = True` answers 503 to everything. Every request
is recorded in `calls`, in order; `messages` holds the channel history as Slack would
show it (with edits applied), `replies` the thread replies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "xoxb-fake-0000-test"
WEBHOOK_PATH = "/services/T0000FAKE/B0000FAKE/aBcDeFgHiJkLmNoPqRsTuVwX"


@dataclass
class Call:
    method: str  # chat.postMessage, chat.update, webhook
    body: dict[str, Any]
    status: int
    answer: dict[str, Any] | str

    @property
    def ok(self) -> bool:
        return _ok(self.answer)


@dataclass
class Fault:
    status: int = 200
    error: str = ""  # Slack error code, answered with ok: false
    retry_after: float | None = None
    delay: float = 0.0  # seconds before answering
    body: str | None = None  # a raw body instead (an HTML error page ...)


@dataclass
class Posted:
    channel: str
    ts: str
    body: dict[str, Any]
    edits: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def current(self) -> dict[str, Any]:
        return self.edits[-1] if self.edits else self.body


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: list[Posted] = []  # top-level messages, in posting order
        self.webhook_posts: list[dict[str, Any]] = []
        self.faults: deque[Fault] = deque()
        self.outage = False
        self.missing_channels: set[str] = set()
        self._ts = 1_800_000_000_000_100
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()  # cuts scripted delays short at close
        self.base_url = ""
        self.webhook_url = ""

    # -- scripting -----------------------------------------------------------------------

    def fail_next(self, times: int = 1, /, **fault: Any) -> None:
        for _ in range(times):
            self.faults.append(Fault(**fault))

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def accepted(self) -> list[Call]:
        return [c for c in self.calls if c.status == 200 and _ok(c.answer)]

    def find(self, ts: str) -> Posted:
        for message in self.messages:
            if message.ts == ts:
                return message
        raise KeyError(ts)

    # -- serving -------------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.update", self._update)
        app.router.add_post("/services/{rest:.*}", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/api/"
        self.webhook_url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _fault(self) -> Fault | None:
        if self.outage:
            return Fault(status=503, body="<html>upstream connect error</html>")
        if not self.faults:
            return None
        fault = self.faults.popleft()
        if fault.delay:
            try:
                async with asyncio.timeout(fault.delay):
                    await self._closing.wait()
            except TimeoutError:
                pass
        return fault

    def _answer_fault(self, method: str, body: dict[str, Any], fault: Fault) -> web.Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.body is not None:
            self.calls.append(Call(method, body, fault.status, fault.body))
            return web.Response(
                status=fault.status, text=fault.body, content_type="text/html", headers=headers
            )
        answer = {"ok": False, "error": fault.error or "ratelimited"}
        self.calls.append(Call(method, body, fault.status, answer))
        return web.json_response(answer, status=fault.status, headers=headers)

    async def _web_api(self, request: web.Request, method: str) -> tuple[dict[str, Any], Any]:
        body = await request.json()
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return body, {"ok": False, "error": "invalid_auth"}
        fault = await self._fault()
        if fault is not None:
            return body, fault
        problem = _check_message(body)
        if problem:
            return body, {"ok": False, "error": problem}
        return body, None

    async def _post_message(self, request: web.Request) -> web.Response:
        method = "chat.postMessage"
        body, refused = await self._web_api(request, method)
        if isinstance(refused, Fault):
            return self._answer_fault(method, body, refused)
        answer = refused or self._do_post(body)
        self.calls.append(Call(method, body, 200, answer))
        return web.json_response(answer)

    def _do_post(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("channel", ""))
        if not name or name in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        channel = name if _is_id(name) else channel_id(name)
        ts = self._next_ts()
        thread = body.get("thread_ts")
        if thread is not None:
            try:
                parent = self.find(str(thread))
            except KeyError:
                return {"ok": False, "error": "thread_not_found"}
            if parent.channel != channel:
                return {"ok": False, "error": "thread_not_found"}
            parent.replies.append(body)
        else:
            self.messages.append(Posted(channel, ts, body))
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body["text"]}}

    async def _update(self, request: web.Request) -> web.Response:
        method = "chat.update"
        body, refused = await self._web_api(request, method)
        if isinstance(refused, Fault):
            return self._answer_fault(method, body, refused)
        answer = refused or self._do_update(body)
        self.calls.append(Call(method, body, 200, answer))
        return web.json_response(answer)

    def _do_update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        if not _is_id(channel):
            return {"ok": False, "error": "channel_not_found"}
        try:
            message = self.find(str(body.get("ts", "")))
        except KeyError:
            return {"ok": False, "error": "message_not_found"}
        if message.channel != channel:
            return {"ok": False, "error": "message_not_found"}
        message.edits.append(body)
        return {"ok": True, "channel": channel, "ts": message.ts, "text": body["text"]}

    async def _webhook(self, request: web.Request) -> web.Response:
        raw = await request.text()
        body = json.loads(raw) if raw else {}
        if request.path != WEBHOOK_PATH:
            self.calls.append(Call("webhook", body, 403, "invalid_token"))
            return web.Response(status=403, text="invalid_token", content_type="text/plain")
        fault = await self._fault()
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            text = fault.body or fault.error or "rate_limited"
            self.calls.append(Call("webhook", body, fault.status, text))
            return web.Response(
                status=fault.status, text=text, content_type="text/plain", headers=headers
            )
        problem = _check_message(body)
        if problem:
            self.calls.append(Call("webhook", body, 400, "invalid_blocks"))
            return web.Response(status=400, text="invalid_blocks", content_type="text/plain")
        self.webhook_posts.append(body)
        self.calls.append(Call("webhook", body, 200, "ok"))
        return web.Response(text="ok", content_type="text/plain")

    def _next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"


def channel_id(name: str) -> str:
    """The id the fake gives a channel name: stable, like Slack's."""
    digest = hashlib.blake2b(name.encode(), digest_size=5).hexdigest().upper()
    return f"C{digest}"


def _is_id(channel: str) -> bool:
    return channel[:1] in ("C", "G", "D") and channel[1:].isalnum() and channel.isupper()


def _ok(answer: dict[str, Any] | str) -> bool:
    return answer == "ok" or (isinstance(answer, dict) and answer.get("ok") is True)


def _check_message(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return "no_text"
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            if block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150:
                return "invalid_blocks"
        elif kind == "section":
            section_text = block.get("text")
            fields = block.get("fields", [])
            if section_text is None and not fields:
                return "invalid_blocks"
            if section_text is not None and not 0 < len(section_text["text"]) <= 3000:
                return "invalid_blocks"
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return "invalid_blocks"
        elif kind == "context":
            elements = block.get("elements", [])
            if not 0 < len(elements) <= 10:
                return "invalid_blocks"
        else:
            return "invalid_blocks"
    return ""
