"""`[daemon] event_loop`: what each choice runs on."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from monitor import event_loop
from monitor.event_loop import EventLoopChoice, loop_factory, resolve, running_loop_name


@pytest.mark.parametrize(
    ("choice", "installed", "expected"),
    [
        ("auto", True, "uvloop"),
        ("auto", False, "asyncio"),
        ("uvloop", True, "uvloop"),
        ("asyncio", True, "asyncio"),
        ("asyncio", False, "asyncio"),
    ],
)
def test_resolve(
    choice: EventLoopChoice, installed: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_loop, "uvloop_installed", lambda: installed)
    assert resolve(choice) == expected


@pytest.mark.parametrize(
    ("choice", "loop_type", "name"),
    [("uvloop", uvloop.Loop, "uvloop"), ("asyncio", asyncio.SelectorEventLoop, "asyncio")],
)
def test_the_factory_makes_the_loop_the_start_log_names(
    choice: EventLoopChoice, loop_type: type, name: str
) -> None:
    async def main() -> str:
        await asyncio.sleep(0)
        return running_loop_name()

    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        assert isinstance(runner.get_loop(), loop_type)
        assert runner.run(main()) == name
