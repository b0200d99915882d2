"""Bad disks: every failure of the file or the device under it is one clear `StoreError`
that names the file and what to do, never a traceback from sqlite3."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.errors import StoreError
from monitor.model import Health, State
from monitor.store.crypto import Keyring
from monitor.store.sqlite import SqliteStore
from tests.store.samples import full_health, full_tokens

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


async def open_error(path: Path, key: str) -> str:
    store = SqliteStore(path, Keyring([key]))
    with pytest.raises(StoreError) as info:
        await store.open()
    await store.close()  # a failed open leaves nothing to close; must still be harmless
    return str(info.value)


async def make_store_file(path: Path, key: str) -> None:
    store = SqliteStore(path, Keyring([key]))
    await store.open()
    await store.save_tokens("c1", full_tokens(), expected_version=0)
    await store.save_health([(f"c{i}", full_health(i)) for i in range(500)])
    await store.close()


async def test_parent_path_is_a_regular_file(tmp_path: Path, key_a: str) -> None:
    (tmp_path / "state").write_text("not a directory")

    message = await open_error(tmp_path / "state" / "snowmon.db", key_a)

    assert message == (
        f"SQLite store {tmp_path}/state/snowmon.db: cannot create its directory: "
        f"{tmp_path}/state exists and is not a directory"
    )


async def test_store_path_is_a_directory(tmp_path: Path, key_a: str) -> None:
    message = await open_error(tmp_path, key_a)

    assert message == f"SQLite store {tmp_path} is a directory; name a file inside it"


async def test_a_file_that_is_not_a_database(tmp_path: Path, key_a: str) -> None:
    path = tmp_path / "snowmon.db"
    path.write_bytes(b"# snowmon.toml, put here by mistake\n" * 200)

    message = await open_error(path, key_a)

    assert message == (
        f"SQLite store {path}: open failed: file is not a database. "
        "Check daemon.store, or move the file aside."
    )
    assert path.read_bytes() == b"# snowmon.toml, put here by mistake\n" * 200


async def test_a_corrupt_database(tmp_path: Path, key_a: str) -> None:
    path = tmp_path / "snowmon.db"
    await make_store_file(path, key_a)
    damaged = bytearray(path.read_bytes())
    damaged[4096 : 4096 * 4] = os.urandom(4096 * 3)  # the schema's and tables' pages
    path.write_bytes(bytes(damaged))

    message = await open_error(path, key_a)

    assert message.startswith(f"SQLite store {path}: open failed: database disk image is malformed")
    assert message.endswith(
        "restore it from a backup, or move it aside to start afresh "
        "(connections will be granted again)."
    )


async def test_disk_full_fails_the_write_keeps_the_data_and_recovers(
    sqlite_store: SqliteStore, key_a: str
) -> None:
    await sqlite_store.save_tokens("c1", full_tokens(), expected_version=0)

    # SQLite reports a device without space and a database at its page limit alike
    # (SQLITE_FULL); the limit is per connection, so set it on the store's own.
    def cap() -> None:
        conn = sqlite_store._db()  # the store's own connection, on its worker
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await sqlite_store._call("cap the file", cap)
    big = [(f"c{i}", Health(State.HEALTHY, 0.0, last_error="x" * 2000)) for i in range(200)]

    with pytest.raises(StoreError) as info:
        await sqlite_store.save_health(big)

    assert str(info.value) == (
        f"SQLite store {sqlite_store.path}: save health failed: database or disk is full. "
        "The disk is full: free space on it or move the store elsewhere."
    )
    assert set(await sqlite_store.load_all_tokens()) == {"c1"}
    assert await sqlite_store.load_all_health() == {}

    await sqlite_store._call(  # space is back
        "uncap",
        lambda: sqlite_store._db().execute("PRAGMA max_page_count = 1000000000"),
    )
    await sqlite_store.save_health(big)
    assert await sqlite_store.save_tokens("c2", full_tokens("c2"), expected_version=0) == 1


# -- as an unprivileged user and on real devices, in a child process ----------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="snowmon-store-"))
    path.chmod(0o755)
    yield path
    for sub in (path, *path.rglob("*")):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)


def run_probe(
    args: list[str], *, as_nobody: bool = False, wrap: list[str] | None = None
) -> list[dict[str, object]]:
    prefix = list(wrap or [])
    if as_nobody and os.geteuid() == 0:  # as a normal user, chmod already binds
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        prefix += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    result = subprocess.run(
        [*prefix, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def probe_cmd(path: Path, key: str, action: str) -> list[str]:
    return [sys.executable, "-m", "tests.store.store_probe", str(path), key, action]


def test_unwritable_directory_for_the_daemon_user(shared_dir: Path, key_a: str) -> None:
    (shared_dir / "ro").mkdir(mode=0o555)
    path = shared_dir / "ro" / "snowmon.db"

    (outcome,) = run_probe(probe_cmd(path, key_a, "open"), as_nobody=True)

    assert outcome == {
        "ok": False,
        "stage": "open",
        "error": "StoreError",
        "message": f"SQLite store {path}: cannot create it: Permission denied ({path}). "
        "Check that the directory exists and this user can write to it.",
    }


async def test_read_only_database_file_for_the_daemon_user(shared_dir: Path, key_a: str) -> None:
    path = shared_dir / "snowmon.db"
    await make_store_file(path, key_a)
    os.chmod(path, 0o444)
    os.chmod(shared_dir, 0o555)  # noqa: S103 the daemon's user may enter, not write

    (outcome,) = run_probe(probe_cmd(path, key_a, "open"), as_nobody=True)

    assert outcome["ok"] is False
    assert outcome["stage"] == "open"
    assert outcome["message"] == (
        f"SQLite store {path}: open failed: attempt to write a readonly database. "
        "The file or its directory is read-only for this user: fix the permissions or the "
        "mount, or point daemon.store elsewhere."
    )


@pytest.fixture(scope="session")
def private_mounts() -> None:
    """Skip unless this process may mount a tmpfs in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    with tempfile.TemporaryDirectory() as target:
        check = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount -t tmpfs -o size=64k tmpfs {target}",
            ],
            capture_output=True,
            check=False,
        )
    if check.returncode != 0:
        pytest.skip("needs CAP_SYS_ADMIN to mount a tmpfs in a private mount namespace")


@pytest.mark.usefixtures("private_mounts")
def test_real_full_device_then_read_only_mount(shared_dir: Path, key_a: str) -> None:
    # A 1 MiB tmpfs in a mount namespace of the child's own: the kernel's ENOSPC and
    # EROFS, not a simulation, and nothing left mounted when the child exits.
    path = shared_dir / "snowmon.db"
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {shared_dir}"
        f" && {shlex.join(probe_cmd(path, key_a, 'fill'))}"
        f" && mount -o remount,ro {shared_dir}"
        f" && {shlex.join(probe_cmd(path, key_a, 'open'))}"
    )

    full, read_only = run_probe(
        ["sh", "-c", script], wrap=["unshare", "--mount", "--propagation", "private"]
    )

    assert full == {
        "ok": False,
        "stage": "fill",
        "error": "StoreError",
        "message": f"SQLite store {path}: save health failed: database or disk is full. "
        "The disk is full: free space on it or move the store elsewhere.",
        "readable_after": ["c1"],
    }
    assert read_only["stage"] == "open"
    assert str(read_only["message"]).startswith(
        f"SQLite store {path}: open failed: attempt to write a readonly database."
    )
    assert not path.exists()  # the device went away with the namespace
