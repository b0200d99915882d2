"""The image's install steps, without Docker: the build context .dockerignore lets
through, the Dockerfile's own RUN commands (wheel, then a pip-less virtual environment
with only that wheel), then the installed `snowmon` checks the example configs, runs,
answers the image's HEALTHCHECK and drains on SIGTERM.

Slow (a minute with a cold pip cache): pip builds the wheel in an isolated environment
and installs the dependencies from the package index."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.assets import dockerfile
from tests.assets.conftest import ROOT
from tests.assets.live import free_port
from tests.assets.test_dockerfile import run_healthcheck

pytestmark = pytest.mark.slow

IMAGE = dockerfile.parse(ROOT / "Dockerfile")


class Image:
    """The image's file system paths, mapped into a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.context = root / "context"
        self.wheels = root / "wheels"
        self.venv = root / "opt" / "snowmon"
        self.secrets = root / "run" / "secrets" / "snowmon"

    def map(self, command: str) -> str:
        return command.replace("/wheels", str(self.wheels)).replace("/opt/snowmon", str(self.venv))

    def env(self) -> dict[str, str]:
        # The image's ENV PATH=/opt/snowmon/bin:$PATH, over this interpreter's Python and
        # pip standing in for the base image's.
        path = os.pathsep.join([str(self.venv / "bin"), str(Path(sys.executable).parent)])
        keep = {k: v for k, v in os.environ.items() if k in {"HOME", "LANG", "TMPDIR"}}
        proxy = {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
        return {
            **keep,
            **proxy,
            "PATH": f"{path}{os.pathsep}/usr/bin:/bin",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }

    def run(self, command: str, cwd: Path) -> None:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.map(command)],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"

    def snowmon(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "snowmon"), *args],
            cwd=self.root,
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    image = Image(tmp_path_factory.mktemp("image"))
    # The build context: what .dockerignore lets through, nothing else.
    for relative in dockerfile.context_files(ROOT, ROOT / ".dockerignore"):
        target = image.context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    build = IMAGE.stage("build")
    for step in build.all("RUN"):
        image.run(step.args, cwd=image.context)
    installs = [r for r in IMAGE.final.all("RUN") if "/wheels" in r.args]
    assert installs, "the runtime stage installs the wheel"
    for step in installs:
        image.run(step.args, cwd=image.root)
    return image


def test_the_build_makes_one_wheel(image: Image) -> None:
    (wheel,) = image.wheels.glob("*.whl")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert wheel.name.startswith(f"snowmon-{version}-")


def test_the_venv_holds_the_installed_wheel_and_its_dependencies_only(image: Image) -> None:
    python = str(image.venv / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import monitor, sys; print(monitor.__file__); print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=image.root,
        env=image.env(),
    ).stdout.split()
    assert Path(where[0]).is_relative_to(image.venv), "installed, not the checkout"
    assert not (image.venv / "bin" / "pip").exists(), "no pip in the runtime environment"
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=image.env(),
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_snowmon_version(image: Image) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    result = image.snowmon("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"snowmon {version}"


def _check_env(config: dict[str, Any], image: Image) -> dict[str, str]:
    """Values for every env: reference of a config; a real key where a key is wanted."""
    image.secrets.mkdir(parents=True, exist_ok=True)
    key_file = image.secrets / "encryption.key"
    if not key_file.exists():
        assert image.snowmon("keygen", str(key_file)).returncode == 0
    key = key_file.read_text(encoding="utf-8").strip()
    env = {}
    for value in _strings(config):
        if value.startswith("env:"):
            name = value[4:]
            env[name] = key if "KEY" in name else f"value-of-{name.lower()}-0123456789"
    return env


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _k8s_config_text() -> str:
    docs = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "snowmon.yaml").read_text())
    (configmap,) = [d for d in docs if d and d["kind"] == "ConfigMap"]
    text: str = configmap["data"]["snowmon.toml"]
    return text


@pytest.mark.parametrize("example", ["compose", "kubernetes"])
def test_snowmon_check_accepts_the_example_configs(image: Image, example: str) -> None:
    if example == "compose":
        text = (ROOT / "deploy" / "compose" / "snowmon.toml").read_text(encoding="utf-8")
    else:
        text = _k8s_config_text()
    env = _check_env(tomllib.loads(text), image)
    # The secrets the example mounts at /run/secrets/snowmon live in the temporary tree.
    config = image.root / f"{example}.toml"
    config.write_text(text.replace("/run/secrets/snowmon", str(image.secrets)))
    result = image.snowmon("check", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "connections: 1" in result.stdout
    assert "inline secret" not in result.stderr


def test_the_installed_daemon_runs_passes_the_healthcheck_and_drains(image: Image) -> None:
    port = free_port()
    key = image.root / "daemon.key"
    if not key.exists():
        assert image.snowmon("keygen", str(key)).returncode == 0
    config = image.root / "daemon.toml"
    config.write_text(
        f"""
[daemon]
store = "sqlite:///{image.root / "store" / "snowmon.db"}"
encryption_keys = ["file:{key}"]

[web]
listen = "127.0.0.1:{port}"

[telemetry]
traces = "none"
"""
    )
    (image.root / "store").mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    log = image.root / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(image.venv / "bin" / "snowmon"), "run", "--config", str(config)],
            cwd=image.root,
            env=image.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while run_healthcheck(f"{base}/healthz", str(image.venv / "bin" / "python")) != 0:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:  # noqa: S310
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
            assert b"snowmon_build_info" in response.read()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert time.monotonic() - started < 25
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()
