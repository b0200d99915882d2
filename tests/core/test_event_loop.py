"""`[daemon] event_loop`: what each choice runs on."""

from __future__ import annotations

import asyncio

import pytest

from monitor import event_loop
from monitor.event_loop import EventLoopChoice, loop_factory, resolve, running_loop_name


@pytest.mark.parametrize(
    ("choice", "imports", "expected"),
    [
        ("auto", True, "uvloop"),
        ("auto", False, "asyncio"),
        ("uvloop", True, "uvloop"),
        ("uvloop", False, "uvloop"),  # insisted on: the config check refuses it first
        ("asyncio", True, "asyncio"),
        ("asyncio", False, "asyncio"),
    ],
)
def test_resolve(
    choice: EventLoopChoice, imports: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_loop, "uvloop_installed", lambda: imports)
    assert resolve(choice) == expected


async def _loop_name() -> str:
    await asyncio.sleep(0)
    return running_loop_name()


def test_asyncio_runs_on_the_loop_asyncio_run_makes() -> None:
    assert loop_factory("asyncio") is None
    with asyncio.Runner(loop_factory=loop_factory("asyncio")) as runner:
        assert isinstance(runner.get_loop(), asyncio.SelectorEventLoop)
        assert runner.run(_loop_name()) == "asyncio"


def test_uvloop_runs_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        assert runner.run(_loop_name()) == "uvloop"
