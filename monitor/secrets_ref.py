"""Secret references: `env:NAME` and `file:/path`, resolved once when the config loads.

A config file names where a secret lives rather than holding it, so the file can sit in
git or a ConfigMap while the values come from the environment or mounted secret files.
Anything that is neither reference is an inline value: usable, but warned about.

Messages here name the variable or the path, never the value.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from monitor.errors import SecretError
from monitor.secret import Secret

ENV_PREFIX: Final = "env:"
FILE_PREFIX: Final = "file:"
INLINE_WARNING: Final = "inline secret; use env: or file:"
MODE_WARNING_END: Final = "; chmod 600 it"  # how a group- or world-readable file's warning ends

# A secret file holds a password or a key, not a database: reading a huge or endless file
# (a wrong path like /dev/zero or a log file) must fail fast instead of eating memory.
MAX_FILE_BYTES: Final = 64 * 1024

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_reference(raw: str) -> bool:
    return raw.startswith((ENV_PREFIX, FILE_PREFIX))


@dataclass(slots=True)
class SecretResolver:
    """Resolves references against one environment; caches each file it reads.

    One resolver serves a whole load, so a fleet of connections sharing one secret file
    reads it once. `warnings` collects what is usable but unwise; the caller prefixes
    them with the file and field they belong to.
    """

    environ: Mapping[str, str]
    _files: dict[Path, tuple[Secret, str | None]] = field(default_factory=dict)

    def resolve(self, raw: str, *, base_dir: Path) -> tuple[Secret, str | None]:
        """Return the secret and an optional warning, or raise SecretError.

        `base_dir` anchors relative `file:` paths: the directory of the file in which
        the reference is written.
        """
        if raw.startswith(ENV_PREFIX):
            return self._from_env(raw[len(ENV_PREFIX) :]), None
        if raw.startswith(FILE_PREFIX):
            return self._from_file(raw[len(FILE_PREFIX) :], base_dir)
        if not raw:
            raise SecretError("is empty")
        return Secret(raw), INLINE_WARNING

    def _from_env(self, name: str) -> Secret:
        if not _ENV_NAME.fullmatch(name):
            raise SecretError("env: needs a variable name like env:ACME_CLIENT_SECRET")
        value = self.environ.get(name)
        if value is None:
            raise SecretError(f"environment variable {name} is not set")
        if not value:
            raise SecretError(f"environment variable {name} is empty")
        return Secret(value)

    def _from_file(self, spec: str, base_dir: Path) -> tuple[Secret, str | None]:
        if not spec:
            raise SecretError("file: needs a path like file:/run/secrets/name")
        path = Path(spec) if Path(spec).is_absolute() else base_dir / spec
        cached = self._files.get(path)
        if cached is None:
            cached = _read_secret_file(path, spec)
            self._files[path] = cached
        return cached


def _read_secret_file(path: Path, spec: str) -> tuple[Secret, str | None]:
    where = f"{FILE_PREFIX}{spec}"
    try:
        info = path.stat()
        # A FIFO or a character device would block or never end: only plain files
        # (symlinks to them, as Kubernetes mounts secrets, are followed) are read.
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"cannot read {where}: not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretError(f"cannot read {where}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SecretError(f"cannot read {where}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"cannot read {where}: not UTF-8 text") from None
    # Editors and `echo` add a final newline that is never part of the secret.
    value = text.rstrip("\r\n")
    if not value:
        raise SecretError(f"{where} is empty")
    warning = None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        warning = f"{where} is readable by group or others (mode {mode:04o}){MODE_WARNING_END}"
    return Secret(value), warning
