"""Config warnings are capped: at most `WARNING_LIMIT` lines, then one line counting the
rest by kind, in `snowmon check` and at the start of `snowmon run` (tests/daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import WARNING_LIMIT, capped_warnings, check_report, load_config

from .conftest import DAEMON, ENV, KEY, Writer

INLINE = "inline secret; use env: or file:"
READABLE = "file:pw is readable by group or others (mode 0644); chmod 600 it"


def inline(n: int) -> str:
    return f"snowmon.toml: connections[c{n}].password: {INLINE}"


def readable(n: int) -> str:
    return f"snowmon.toml: connections[c{n}].password: {READABLE}"


@pytest.mark.parametrize(
    ("warnings", "limit", "shown", "suppressed"),  # shown: a count of the first, or the lines
    [
        pytest.param([], 50, 0, None, id="none"),
        pytest.param([inline(i) for i in range(50)], 50, 50, None, id="exactly-the-limit"),
        pytest.param(
            [inline(i) for i in range(51)],
            50,
            50,
            "... and 1 more warning (1 inline secret)",
            id="one-over",
        ),
        pytest.param(
            [inline(i) for i in range(200_001)],
            50,
            50,
            "... and 199,951 more warnings (199,951 inline secrets)",
            id="a-100k-fleet",
        ),
        pytest.param(
            [inline(i) for i in range(5)] + [readable(i) for i in range(3)] + [inline(9)],
            5,
            [readable(0), readable(1), readable(2), inline(0), inline(1)],
            "... and 4 more warnings (4 inline secrets)",
            id="inline-secrets-last",
        ),
        pytest.param(
            [inline(i) for i in range(5)] + [readable(i) for i in range(3)] + [inline(9)],
            2,
            [readable(0), readable(1)],
            "... and 7 more warnings (6 inline secrets, 1 secret file readable by others)",
            id="kinds-by-count",
        ),
        pytest.param(
            [inline(0), "snowmon.toml: no connections configured", "x: y: something new"],
            1,
            ["snowmon.toml: no connections configured"],
            "... and 2 more warnings (1 other, 1 inline secret)",
            id="unknown-kinds-are-others",
        ),
        pytest.param(
            [inline(i) for i in range(3)],
            0,
            0,
            "... and 3 more warnings (3 inline secrets)",
            id="limit-0",
        ),
    ],
)
def test_capped_warnings(
    warnings: list[str], limit: int, shown: int | list[str], suppressed: str | None
) -> None:
    lines, rest = capped_warnings(warnings, limit)
    assert lines == (warnings[:shown] if isinstance(shown, int) else shown)
    assert rest == suppressed


def test_the_default_limit_is_50() -> None:
    assert WARNING_LIMIT == 50
    lines, rest = capped_warnings([inline(i) for i in range(60)])
    assert len(lines) == 50
    assert rest == "... and 10 more warnings (10 inline secrets)"


def fleet_with_warnings(write: Writer, tmp_path: Path) -> Path:
    """30 connections with an inline client secret and password (60 warnings), then 12
    whose password file is group-readable (12 more)."""
    pw = tmp_path / "pw"
    pw.write_text("file-password\n")
    pw.chmod(0o644)
    text = DAEMON
    for n in range(42):
        secret, password = (
            ("inline-secret", "inline-password") if n < 30 else ("env:ACME_SECRET", "file:pw")
        )
        text += f"""
[[connections]]
id = "c{n}"
instance_url = "https://c{n}.service-now.com"
grant = "password"
client_id = "0123456789abcdef0123456789abcdef"
client_secret = "{secret}"
username = "snowmon.integration"
password = "{password}"
"""
    return write("snowmon.toml", text)


def test_load_keeps_every_warning(write: Writer, tmp_path: Path) -> None:
    loaded = load_config(fleet_with_warnings(write, tmp_path), environ=ENV)
    assert len(loaded.warnings) == 72
    assert loaded.warnings[-1] == readable(41)


def test_check_report_shows_50_warnings_and_counts_the_rest(write: Writer, tmp_path: Path) -> None:
    path = fleet_with_warnings(write, tmp_path)
    code, text = check_report(path, environ=ENV)
    assert code == 0
    lines = text.splitlines()
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 50
    # The 12 readable secret files first (never out of sight), then inline secrets.
    assert warnings[:12] == [f"warning: {readable(n)}" for n in range(30, 42)]
    assert warnings[12] == f"warning: snowmon.toml: connections[c0].client_secret: {INLINE}"
    assert lines[50] == "... and 22 more warnings (22 inline secrets)"
    assert lines[51:53] == [f"{path}: OK", "connections: 42 from 1 file(s) (password 42)"]
    assert "inline-secret" not in text
    assert "inline-password" not in text
    assert "file-password" not in text


def test_snowmon_check_prints_at_most_50_warning_lines(
    write: Writer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SNOWMON_KEY", KEY)
    monkeypatch.setenv("ACME_SECRET", ENV["ACME_SECRET"])
    path = fleet_with_warnings(write, tmp_path)
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 51
    assert all(line.startswith("warning: snowmon.toml: connections[") for line in lines[:50])
    assert sum(READABLE in line for line in lines[:50]) == 12
    assert lines[50] == "... and 22 more warnings (22 inline secrets)"
    assert out.startswith("connections: 42 from 1 file(s)")
