"""The fleet's HTTP front: listening sockets, routing a request to its instance, faults.

Each instance looks like a host of its own: with few instances every one owns a socket on
its own loopback address (127.0.0.2, 127.0.0.3, ...), so a client's per-host connection
pools behave as against a real fleet; with many, instances share the sockets and are told
apart by a path prefix (`http://127.0.0.5:PORT/dev100042`), which still looks like a
host root to a client that appends `/oauth_token.do` or `/api/now/...` to the base URL.

One low-level aiohttp server per socket, no router and no middleware: the Table API
probe is the hot path and must stay cheap. Faults are applied around the handlers:
hibernation and maintenance first, then latency, resets, semaphore rejections and
server errors, and finally body faults (truncated, malformed, slow) on the way out.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import resource
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from monitor.emulator.authorize import AuthorizeEndpoint
from monitor.emulator.faults import Endpoint, Faults
from monitor.emulator.fleet import Instance, socket_address, socket_plan
from monitor.emulator.state import FleetState
from monitor.emulator.table_api import handle as table_handle
from monitor.emulator.tls import TlsFiles
from monitor.emulator.token_endpoint import TokenEndpoint
from monitor.emulator.wire import (
    Reply,
    bad_gateway,
    base_headers,
    hibernating,
    maintenance,
    method_not_supported,
    not_a_resource,
    not_found_page,
    semaphore_full,
    server_error,
    to_response,
    unavailable,
    wire_body,
)

TOKEN_PATH = "/oauth_token.do"  # noqa: S105 - a path, not a password
AUTHORIZE_PATH = "/oauth_auth.do"


class Slot:
    """One listening socket and the instances it serves."""

    __slots__ = ("by_name", "instance", "runner")

    def __init__(self) -> None:
        self.instance: Instance | None = None  # set when the instance owns the socket
        self.by_name: dict[str, Instance] = {}
        self.runner: web.ServerRunner | None = None


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            sock.close()
            raise
        # systems without all of 127/8 on loopback (macOS): own ports on 127.0.0.1 instead
        sock.bind(("127.0.0.1", 0 if port == 0 else port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _table_route(path: str) -> tuple[str, str, str | None] | None:
    """(version, table, sys_id) of a Table API path, or None if it names no resource."""
    parts = path.split("/")  # "", "api", "now", [v1|v2], "table", name, [sys_id]
    if parts and parts[-1] == "":
        parts.pop()
    version = ""
    rest = parts[3:]
    if rest and rest[0] in {"v1", "v2"}:
        version, rest = rest[0], rest[1:]
    if len(rest) in {2, 3} and rest[0] == "table" and rest[1]:
        return version, rest[1], rest[2] if len(rest) == 3 else None
    return None


class _CountingServer(web.Server):
    """The low-level server of one socket, counting the TCP connections it accepts into
    the fleet's stats (a connection per request, or kept alive, is benchmark evidence)."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        state: FleetState,
    ) -> None:
        super().__init__(handler, access_log=None)
        self._state = state

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._state.connections_accepted += 1


class FleetServer:
    def __init__(self, state: FleetState, tls: TlsFiles | None = None) -> None:
        self.state = state
        self.tls = tls  # every instance socket speaks HTTPS, with its address's certificate
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.slots: list[Slot] = []
        self.tokens = TokenEndpoint(state)
        self.authorize = AuthorizeEndpoint(state)

    async def start(self) -> None:
        options = self.state.options
        count, prefixed = socket_plan(options)
        raise_file_limit(count + 256)
        self.slots = [Slot() for _ in range(count)]
        sockets = []
        try:
            for index, slot in enumerate(self.slots):
                sock = _listen(*socket_address(index, options))
                sockets.append(sock)
                host, port = sock.getsockname()[:2]
                for instance in self.state.instances[index::count]:
                    instance.socket_index = index
                    if prefixed:
                        instance.prefix = f"/{instance.name}"
                        slot.by_name[instance.name] = instance
                    else:
                        slot.instance = instance
                    scheme = "https" if self.tls is not None else "http"
                    instance.base_url = f"{scheme}://{host}:{port}{instance.prefix}"
                server = _CountingServer(functools.partial(self._handle, slot), self.state)
                slot.runner = web.ServerRunner(server, handle_signals=False)
                await slot.runner.setup()
                await web.SockSite(slot.runner, sock, ssl_context=self._context(host)).start()
        except BaseException:
            for sock in sockets:
                sock.close()
            await self.stop()
            raise

    def _context(self, host: str) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        if host not in self._contexts:
            self._contexts[host] = self.tls.server_context(host)
        return self._contexts[host]

    async def stop(self) -> None:
        for slot in self.slots:
            if slot.runner is not None:
                await slot.runner.cleanup()
                slot.runner = None

    # --- per request ----------------------------------------------------------------

    async def _handle(self, slot: Slot, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        instance = slot.instance
        if instance is None:
            name, _, rest = path[1:].partition("/")
            instance = slot.by_name.get(name)
            if instance is None:
                return to_response(request, not_found_page())
            path = "/" + rest
        faults = instance.faults
        if faults is not None and (faults.hibernate or faults.maintenance):
            reply = hibernating() if faults.hibernate else maintenance()
            # counted like any answer, so evidence shows what the client was really served
            if path.startswith("/api/"):
                instance.live_stats().table_requests[reply.status] += 1
            elif path == TOKEN_PATH:
                instance.live_stats().token_requests[reply.status] += 1
            return to_response(request, reply)
        if path.startswith("/api/"):
            return await self._table(instance, request, path, faults)
        if path == TOKEN_PATH:
            return await self._token(instance, request, faults)
        if path == AUTHORIZE_PATH:
            if faults is not None:
                await self._delay(faults, "authorize")
            reply = await self.authorize.handle(instance, request, instance.prefix)
            return to_response(request, reply)
        return to_response(request, not_found_page())

    async def _table(
        self, instance: Instance, request: web.BaseRequest, path: str, faults: Faults | None
    ) -> web.StreamResponse:
        stats = instance.live_stats().table_requests
        route = _table_route(path) if path.startswith("/api/now/") else None
        if route is None:
            reply = not_a_resource()
        elif request.method != "GET":
            reply = method_not_supported()
        else:
            if faults is not None:
                await self._delay(faults, "table")
                early = self._early_fault(faults, "table")
                if early is not None:
                    if early.status == 0:
                        stats[0] += 1
                        return self._reset(request)
                    stats[early.status] += 1
                    return to_response(request, early)
            version, table, sys_id = route
            reply = table_handle(
                self.state,
                instance,
                request.headers.get("Authorization"),
                request.query,
                version,
                table,
                sys_id,
            )
        stats[reply.status] += 1
        if faults is not None and "table" in faults.on:
            return await self._send_with_body_faults(request, reply, faults)
        return to_response(request, reply)

    async def _token(
        self, instance: Instance, request: web.BaseRequest, faults: Faults | None
    ) -> web.StreamResponse:
        stats = instance.live_stats().token_requests
        if faults is not None:
            early = self._early_fault(faults, "token")
            if early is not None:
                await self._delay(faults, "token")
                if early.status == 0:
                    stats[0] += 1
                    return self._reset(request)
                stats[early.status] += 1
                return to_response(request, early)

            async def pause() -> None:
                await self._delay(faults, "token")

        else:

            async def pause() -> None:
                return None

        reply = await self.tokens.handle(instance, request, pause)
        stats[reply.status] += 1
        if faults is not None and "token" in faults.on:
            return await self._send_with_body_faults(request, reply, faults)
        return to_response(request, reply)

    async def _delay(self, faults: Faults, endpoint: Endpoint) -> None:
        if endpoint in faults.latency_on and (faults.latency or faults.jitter):
            await asyncio.sleep(faults.latency + self.state.rng.uniform(0.0, faults.jitter))

    def _early_fault(self, faults: Faults, endpoint: Endpoint) -> Reply | None:
        """A fault answering before the handler runs; status 0 means reset the connection."""
        rng = self.state.rng
        if endpoint in faults.on:
            if faults.reset and rng.random() < faults.reset:
                return Reply(0, b"")
            if faults.error_500 and rng.random() < faults.error_500:
                return server_error("Internal server error")
            if faults.error_502 and rng.random() < faults.error_502:
                return bad_gateway()
            if faults.error_503 and rng.random() < faults.error_503:
                return unavailable()
        if endpoint == "table" and faults.semaphore and rng.random() < faults.semaphore:
            return semaphore_full()
        return None

    def _reset(self, request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close sends a TCP RST instead of a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # never sent: aiohttp finds the transport gone and drops the response quietly
        return web.Response(status=500)

    async def _send_with_body_faults(
        self, request: web.BaseRequest, reply: Reply, faults: Faults
    ) -> web.StreamResponse:
        if not reply.is_json or not reply.body:
            return to_response(request, reply)
        rng = self.state.rng
        if faults.malformed and rng.random() < faults.malformed:
            # complete HTTP message, incomplete JSON
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
            return to_response(request, reply)
        truncated = bool(faults.truncated) and rng.random() < faults.truncated
        if not truncated and not faults.slow_body:
            return to_response(request, reply)
        headers = base_headers(reply)
        body, _ = wire_body(request, reply, headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        if truncated:
            await response.write(body[: len(body) // 2])
            transport = request.transport
            if transport is not None:
                transport.close()  # flushes what was written, then FIN: body ends early
            return response
        step = -(-len(body) // min(10, len(body)))
        chunks = [body[start : start + step] for start in range(0, len(body), step)]
        await response.write(chunks[0])
        for chunk in chunks[1:]:
            await asyncio.sleep(faults.slow_body / (len(chunks) - 1))
            await response.write(chunk)
        await response.write_eof()
        return response
