"""Slack end to end: the emulator kills one connection's credentials, exactly one
critical message reaches the customer's channel; the daemon restarts with the fixed
secret, sends no duplicate, and marks the original message resolved. With two replicas
sharing a PostgreSQL fleet, the one that adopts the connection continues the alert the
other sent: no second message, and its resolution edits the first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.emulator import Emulator, FleetOptions
from tests.daemon.configs import free_port, on_postgres, write_config
from tests.fakes.slack_api import TOKEN, FakeSlack, channel_id


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack().start()
    try:
        yield fake
    finally:
        await fake.close()


async def _run_until(daemon: Daemon, condition: object, seconds: float) -> None:
    async with asyncio.TaskGroup() as group:
        group.create_task(daemon.run())
        try:
            async with asyncio.timeout(seconds):
                while not condition():  # type: ignore[operator]  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            daemon.stop.set()


def _write_slack_config(
    emu: Emulator, directory: Path, slack: FakeSlack, routes: str = ""
) -> tuple[Path, int]:
    """`write_config` with alerts going to the fake Slack's bot API (token in a file)."""
    extra = f"""
[slack]
enabled = true
mode = "bot"
bot_token = "file:snowmon.secrets/slack.token"
default_channel = "#snowmon"
base_url = "{slack.base_url}"
{routes}
[alerts]
group_window = 1.0
"""
    path, port = write_config(emu.fleet_info(), directory, probe_interval=30, extra=extra)
    token = directory / "snowmon.secrets" / "slack.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    return path, port


async def test_expired_credentials_page_once_and_resolve_after_restart(
    tmp_path: Path, slack: FakeSlack
) -> None:
    async with Emulator(FleetOptions(instances=3, speed=30.0, seed=71)) as emu:
        routes = """
[[slack.routes]]
match = { customer = "acme" }
channel = "#acme-integrations"
"""
        path, port = _write_slack_config(emu, tmp_path, slack, routes)
        base_url = f"http://127.0.0.1:{port}"
        victim = emu.instances[1]

        def keeper_state(daemon: Daemon, cid: str) -> str:
            running = daemon.running
            status = running.keeper.status(cid) if running else None
            return status.health.state.value if status else ""

        first = Daemon(load_config(path).config)

        def expired_and_paged() -> bool:
            return keeper_state(first, victim.name) == "credentials_expired" and bool(
                slack.messages
            )

        async def healthy_then_break() -> None:
            await asyncio.wait_for(first.started.wait(), 10)
            while any(keeper_state(first, i.name) != "healthy" for i in emu.instances):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            new_secret = emu.rotate_secret(victim.name)
            emu.revoke(victim.name)
            (tmp_path / "snowmon.secrets" / f"{victim.name}.client_secret").write_text(new_secret)

        async with asyncio.TaskGroup() as group:
            group.create_task(healthy_then_break())
            await _run_until(first, expired_and_paged, 30)
        await asyncio.sleep(0)  # let the last delivery settle in the store
        posts = [c for c in slack.accepted() if c.method == "chat.postMessage"]
        assert len(posts) == 1, [c.body.get("text") for c in posts]
        message = slack.messages[0]
        assert message.channel == channel_id("#acme-integrations")
        text = str(message.body)
        assert victim.name in text
        assert f"{base_url}/?connection={victim.name}" in text  # the status page link
        assert TOKEN not in text

        # Restart with the fixed secret: no second page, and the original is resolved.
        second = Daemon(load_config(path).config)

        def resolved() -> bool:
            return keeper_state(second, victim.name) == "healthy" and any(
                c.method == "chat.update" for c in slack.accepted()
            )

        await _run_until(second, resolved, 30)
    posts = [
        c for c in slack.accepted() if c.method == "chat.postMessage" and "thread_ts" not in c.body
    ]
    assert len(posts) == 1
    updates = [c for c in slack.accepted() if c.method == "chat.update"]
    assert updates
    assert all(c.body["ts"] == message.ts for c in updates)
    assert "resolved" in str(slack.find(message.ts).current).lower()


async def _until(condition: object, seconds: float, what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not condition():  # type: ignore[operator]  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {seconds} s: {what}") from None


@pytest.mark.postgres
async def test_replica_adopting_a_paged_connection_neither_repeats_nor_forgets(
    tmp_path: Path, slack: FakeSlack, database: str
) -> None:
    async with Emulator(FleetOptions(instances=4, speed=30.0, seed=73)) as emu:
        path, port = _write_slack_config(emu, tmp_path, slack)
        text = on_postgres(path.read_text(), database, lease_seconds=2.0, request_timeout=1.0)
        configs = []
        for name in ("a", "b"):
            config = tmp_path / f"{name}.toml"
            config.write_text(text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"))
            configs.append(config)
        daemons = {
            name: Daemon(load_config(config).config, replica=name)
            for name, config in zip("ab", configs, strict=True)
        }
        ids = [i.name for i in emu.instances]

        def holder(cid: str) -> str:
            for name, daemon in daemons.items():
                conn = daemon.running.keeper.connection(cid) if daemon.running else None
                if conn is not None and conn.owned and not daemon.stop.is_set():
                    return name
            return ""

        def state(name: str, cid: str) -> str:
            running = daemons[name].running
            status = running.keeper.status(cid) if running else None
            return status.health.state.value if status else ""

        def roots() -> list[str]:
            return [
                str(c.body.get("text"))
                for c in slack.accepted()
                if c.method == "chat.postMessage" and "thread_ts" not in c.body
            ]

        async with asyncio.TaskGroup() as group:
            tasks = {n: group.create_task(d.run()) for n, d in daemons.items()}
            try:
                for daemon in daemons.values():
                    await asyncio.wait_for(daemon.started.wait(), 20)
                await _until(
                    lambda: (
                        all(holder(c) and state(holder(c), c) == "healthy" for c in ids)
                        and {holder(c) for c in ids} == {"a", "b"}
                    ),
                    40,
                    "every connection healthy, both replicas holding some",
                )
                victim = ids[1]
                owner = holder(victim)
                heir = "b" if owner == "a" else "a"
                # Both replicas are running (and have read the alert state) before the
                # owner pages: the heir can only learn of the page from the store.
                secret = emu.instance(victim).client_secret
                emu.rotate_secret(victim)
                emu.revoke(victim)
                await _until(
                    lambda: state(owner, victim) == "credentials_expired" and bool(roots()),
                    30,
                    "the owner pages",
                )
                await asyncio.sleep(0.5)  # the delivery's message ts reaches the store
                assert len(roots()) == 1
                ts = slack.messages[0].ts

                daemons[owner].stop.set()
                await tasks[owner]
                await _until(lambda: holder(victim) == heir, 20, "the heir adopts the victim")
                assert state(heir, victim) == "credentials_expired"
                await asyncio.sleep(3.0)  # probes, refreshes and evaluations on the heir
                assert len(roots()) == 1, roots()

                # The secret is fixed: the heir resolves the owner's message in place.
                emu.state.client(victim).secret = secret
                running = daemons[heir].running
                assert running is not None
                await running.keeper.refresh_now(victim)
                await _until(
                    lambda: any(c.method == "chat.update" for c in slack.accepted()),
                    30,
                    "the heir resolves the alert",
                )
                assert state(heir, victim) == "healthy"
            finally:
                for daemon in daemons.values():
                    daemon.stop.set()
    assert len(roots()) == 1, roots()
    updates = [c for c in slack.accepted() if c.method == "chat.update"]
    assert [c.body["ts"] for c in updates] == [ts]
    assert "resolved" in str(slack.find(ts).current).lower()
