"""The Dockerfile and .dockerignore, read without Docker: a multi-stage build on slim
Python that ships only the wheel, runs as a non-root user with its store on a volume,
drains on SIGTERM and checks /healthz with the standard library. The HEALTHCHECK command
itself is run against a small HTTP server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.assets import dockerfile
from tests.assets.conftest import ROOT
from tests.assets.live import free_port

DOCKERFILE = dockerfile.parse(ROOT / "Dockerfile")
DOCKERIGNORE = ROOT / ".dockerignore"
STORE = "/var/lib/snowmon"
CONFIG = "/etc/snowmon/snowmon.toml"


def test_multi_stage_on_the_official_slim_python_image() -> None:
    assert len(DOCKERFILE.stages) >= 2
    for stage in DOCKERFILE.stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base
    assert DOCKERFILE.stages[0].name == "build"


def test_the_build_stage_builds_one_wheel_from_the_package() -> None:
    build = DOCKERFILE.stage("build")
    copied = {source for copy in build.all("COPY") for source in dockerfile.shell_words(copy)[:-1]}
    assert copied == {"pyproject.toml", "README.md", "monitor"}
    runs = " && ".join(r.args for r in build.all("RUN"))
    assert "pip wheel --no-deps --wheel-dir /wheels ." in runs


def test_the_runtime_stage_installs_only_that_wheel() -> None:
    final = DOCKERFILE.final
    assert final.name != "build"
    # Nothing from the build context, and no files from the build stage but the wheel,
    # which comes through a bind mount and so stays in no layer.
    assert final.all("COPY") == []
    assert final.all("ADD") == []
    (install,) = [r for r in final.all("RUN") if "/wheels" in r.args]
    assert install.flags["mount"] == "type=bind,from=build,source=/wheels,target=/wheels"
    assert "install /wheels/*.whl" in install.args
    assert "-e " not in install.args


def test_a_non_root_user_with_a_fixed_uid() -> None:
    final = DOCKERFILE.final
    user = final.last("USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit(), "numeric, so Kubernetes can verify runAsNonRoot"
    assert int(uid) >= 1000
    assert gid.isdigit()
    setup = " ".join(r.args for r in final.all("RUN"))
    assert f"useradd --system --uid {uid}" in setup
    assert f"--gid {gid}" in setup
    # USER comes after every RUN: nothing runs as root once it is set.
    keywords = [i.keyword for i in final.instructions]
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < keywords.index("USER")


def test_the_store_is_a_volume_the_user_owns() -> None:
    final = DOCKERFILE.final
    volume = final.last("VOLUME")
    assert volume is not None
    assert volume.exec_form == [STORE]
    setup = " ".join(r.args for r in final.all("RUN"))
    assert f"chown snowmon:snowmon {STORE}" in setup


def test_entrypoint_and_cmd_in_exec_form() -> None:
    final = DOCKERFILE.final
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    assert entrypoint.exec_form == ["snowmon"]
    assert cmd.exec_form == ["run", "--config", CONFIG]


def test_stops_with_sigterm_and_exposes_the_web_port() -> None:
    final = DOCKERFILE.final
    stop = final.last("STOPSIGNAL")
    expose = final.last("EXPOSE")
    assert stop is not None
    assert stop.args == "SIGTERM"
    assert expose is not None
    assert expose.args == "8080"


def test_healthcheck_asks_healthz_with_the_standard_library() -> None:
    healthcheck = DOCKERFILE.final.last("HEALTHCHECK")
    assert healthcheck is not None
    assert set(healthcheck.flags) == {"interval", "timeout", "start-period", "retries"}
    assert healthcheck.args.startswith("CMD [")
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "/healthz" in command[2]
    runs = " ".join(r.args for stage in DOCKERFILE.stages for r in stage.all("RUN"))
    assert not re.search(r"\b(curl|wget)\b", runs + healthcheck.args)


def healthcheck_command() -> list[str]:
    healthcheck = DOCKERFILE.final.last("HEALTHCHECK")
    assert healthcheck is not None
    words = healthcheck.args.removeprefix("CMD").strip()
    return dockerfile.Instruction("CMD", {}, words).exec_form or []


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _server(status: int) -> Iterator[str]:
    handler = type("Handler", (_Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_healthcheck(url: str, python: str = sys.executable) -> int:
    command = healthcheck_command()
    env = {**os.environ, "SNOWMON_HEALTHZ_URL": url}
    result = subprocess.run(
        [python, *command[1:]], env=env, capture_output=True, timeout=15, check=False
    )
    return result.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_command_tells_healthy_from_not(status: int, healthy: bool) -> None:
    with _server(status) as url:
        assert (run_healthcheck(url) == 0) is healthy


def test_the_healthcheck_command_fails_when_nothing_listens() -> None:
    assert run_healthcheck(f"http://127.0.0.1:{free_port()}/healthz") != 0


# --- .dockerignore ---------------------------------------------------------------------


def test_dockerignore_leaves_out_everything_but_the_package() -> None:
    patterns = dockerfile.ignore_patterns(DOCKERIGNORE)
    assert patterns[0].text == "*"
    assert not patterns[0].negated
    files = dockerfile.context_files(ROOT, DOCKERIGNORE)
    tops = {f.split("/")[0] for f in files}
    assert tops == {"pyproject.toml", "README.md", "monitor"}
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    for secret_like in (".demo", ".venv", ".git", "tests", "var", ".tools"):
        assert not any(f.startswith(secret_like + "/") for f in files)


def test_dockerignore_lets_in_what_the_build_stage_copies() -> None:
    files = dockerfile.context_files(ROOT, DOCKERIGNORE)
    assert "pyproject.toml" in files
    assert "README.md" in files  # pyproject's readme
    assert "monitor/__init__.py" in files
    assert "monitor/py.typed" in files
    assert any(f.startswith("monitor/web/static/") for f in files)  # package data


def test_the_ignore_matcher_follows_docker() -> None:
    patterns = dockerfile.ignore_patterns(DOCKERIGNORE)
    assert dockerfile.excluded("tests/test_x.py", patterns)
    assert dockerfile.excluded("monitor/__pycache__/cli.cpython-311.pyc", patterns)
    assert not dockerfile.excluded("monitor/web/app.py", patterns)
    assert dockerfile.excluded("monitorx", patterns)
    assert isinstance(Path(DOCKERIGNORE), Path)
