"""Secret references, one rule at a time: env:, file:, inline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor.errors import SecretError
from monitor.secrets_ref import INLINE_WARNING, MAX_FILE_BYTES, SecretResolver, is_reference


def resolve(raw: str, base_dir: Path, **environ: str) -> tuple[str, str | None]:
    secret, warning = SecretResolver(environ).resolve(raw, base_dir=base_dir)
    return secret.reveal(), warning


def private_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def test_env_reference_reads_the_variable(tmp_path: Path) -> None:
    assert resolve("env:ACME_SECRET", tmp_path, ACME_SECRET="s3") == ("s3", None)


@pytest.mark.parametrize(
    ("raw", "environ", "message"),
    [
        ("env:ACME_SECRET", {}, "environment variable ACME_SECRET is not set"),
        ("env:ACME_SECRET", {"ACME_SECRET": ""}, "environment variable ACME_SECRET is empty"),
        ("env:", {}, "env: needs a variable name like env:ACME_CLIENT_SECRET"),
        ("env:1BAD", {}, "env: needs a variable name like env:ACME_CLIENT_SECRET"),
        ("env:A B", {}, "env: needs a variable name like env:ACME_CLIENT_SECRET"),
        ("file:", {}, "file: needs a path like file:/run/secrets/name"),
        ("", {}, "is empty"),
    ],
)
def test_bad_references_say_why(
    tmp_path: Path, raw: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SecretError) as caught:
        SecretResolver(environ).resolve(raw, base_dir=tmp_path)
    assert str(caught.value) == message


def test_inline_value_is_used_and_warned_about(tmp_path: Path) -> None:
    assert resolve("plain-value", tmp_path) == ("plain-value", INLINE_WARNING)
    assert not is_reference("plain-value")
    assert is_reference("env:X")
    assert is_reference("file:x")


@pytest.mark.parametrize(
    ("content", "value"),
    [
        (b"s3cret\n", "s3cret"),
        (b"s3cret\r\n", "s3cret"),
        (b"s3cret", "s3cret"),
        (b"  spaced  \n\n", "  spaced  "),  # only line ends are stripped
        (b"multi\nline\n", "multi\nline"),
    ],
)
def test_file_reference_strips_the_final_newline(
    tmp_path: Path, content: bytes, value: str
) -> None:
    private_file(tmp_path / "secret", content)
    assert resolve("file:secret", tmp_path) == (value, None)
    assert resolve(f"file:{tmp_path}/secret", Path("/elsewhere")) == (value, None)


def test_file_reference_warns_when_others_can_read(tmp_path: Path) -> None:
    path = private_file(tmp_path / "secret", b"s3cret")
    path.chmod(0o640)
    assert resolve("file:secret", tmp_path) == (
        "s3cret",
        "file:secret is readable by group or others (mode 0640); chmod 600 it",
    )


def test_file_problems_name_the_path(tmp_path: Path) -> None:
    private_file(tmp_path / "empty", b"\n")
    private_file(tmp_path / "binary", b"\xff\xfe")
    private_file(tmp_path / "huge", b"x" * (MAX_FILE_BYTES + 1))
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")  # would block forever if opened
    cases = {
        "file:missing": "cannot read file:missing: No such file or directory",
        "file:empty": "file:empty is empty",
        "file:binary": "cannot read file:binary: not UTF-8 text",
        "file:huge": f"cannot read file:huge: larger than {MAX_FILE_BYTES} bytes",
        "file:dir": "cannot read file:dir: not a regular file",
        "file:fifo": "cannot read file:fifo: not a regular file",
    }
    for raw, message in cases.items():
        with pytest.raises(SecretError) as caught:
            SecretResolver({}).resolve(raw, base_dir=tmp_path)
        assert str(caught.value) == message


def test_a_file_is_read_once_per_load(tmp_path: Path) -> None:
    path = private_file(tmp_path / "secret", b"first")
    resolver = SecretResolver({})
    assert resolver.resolve("file:secret", base_dir=tmp_path)[0].reveal() == "first"
    path.write_bytes(b"second")
    # The same path through another spelling still hits the one read.
    assert resolver.resolve(f"file:{path}", base_dir=Path("/"))[0].reveal() == "first"
    assert SecretResolver({}).resolve("file:secret", base_dir=tmp_path)[0].reveal() == "second"
