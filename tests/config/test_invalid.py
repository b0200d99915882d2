"""One file per failure mode (testdata/invalid-*.toml), each with the exact problems it
must produce in `# expect:` lines, in order (blackbox_exporter's testdata idea)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import check_report, load_config
from monitor.errors import ConfigError

from .conftest import ENV, TESTDATA

CASES = sorted(TESTDATA.glob("invalid-*.toml"))
EXPECT = "# expect: "


def expected_problems(path: Path) -> list[str]:
    return [
        line[len(EXPECT) :] for line in path.read_text().splitlines() if line.startswith(EXPECT)
    ]


def test_there_are_cases() -> None:
    assert len(CASES) >= 25
    assert all(expected_problems(case) for case in CASES)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_invalid_file_lists_exactly_its_problems(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == expected_problems(path)


@pytest.mark.parametrize("path", CASES[:3], ids=lambda p: p.stem)
def test_check_report_fails_with_the_problems(path: Path) -> None:
    code, text = check_report(path, environ=ENV)
    lines = text.splitlines()
    assert code == 2
    assert lines[:-1] == expected_problems(path)
    count = len(expected_problems(path))
    assert lines[-1] == f"{path}: {count} problem{'s' if count != 1 else ''}"
