"""The deployment examples (deploy/): the Kubernetes manifests and the Compose stack parse,
agree with the image (user, paths, port, signals) and with the daemon's config, and the
Compose stack's Prometheus configuration passes `promtool check config` with the files
mounted where Compose mounts them."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.assets import dockerfile
from tests.assets.conftest import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
MANIFEST = DEPLOY / "kubernetes" / "snowmon.yaml"
SERVICE_MONITOR = DEPLOY / "kubernetes" / "servicemonitor.yaml"
IMAGE = dockerfile.parse(ROOT / "Dockerfile")


def _image_cmd_config() -> str:
    cmd = IMAGE.final.last("CMD")
    assert cmd is not None
    words = cmd.exec_form or []
    return words[words.index("--config") + 1]


def _image_uid() -> int:
    user = IMAGE.final.last("USER")
    assert user is not None
    return int(user.args.partition(":")[0])


def _image_volume() -> str:
    volume = IMAGE.final.last("VOLUME")
    assert volume is not None
    (path,) = volume.exec_form or []
    return path


def _env_refs(config: dict[str, Any]) -> set[str]:
    """Names of the environment variables a config's `env:` references need."""
    found: set[str] = set()

    def visit(value: object) -> None:
        if isinstance(value, str) and value.startswith("env:"):
            found.add(value[4:])
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(config)
    return found


def _file_refs(config: dict[str, Any]) -> set[str]:
    keys = config["daemon"]["encryption_keys"]
    return {k[5:] for k in keys if k.startswith("file:")}


def _listen_port(config: dict[str, Any]) -> int:
    return int(config["web"]["listen"].rpartition(":")[2])


def test_pyyaml_is_available() -> None:
    # The deployment tests read YAML with PyYAML, which the dev dependencies bring in
    # through schemathesis today.
    assert yaml.__version__


# --- Kubernetes ------------------------------------------------------------------------


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _statefulset() -> dict[str, Any]:
    return _manifests()[("StatefulSet", "snowmon")]


def _container() -> dict[str, Any]:
    (container,) = _statefulset()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _k8s_config() -> dict[str, Any]:
    configmap = _manifests()[("ConfigMap", "snowmon-config")]
    return tomllib.loads(configmap["data"]["snowmon.toml"])


def test_the_manifest_has_what_snowmon_needs() -> None:
    assert set(_manifests()) == {
        ("ServiceAccount", "snowmon"),
        ("ConfigMap", "snowmon-config"),
        ("Secret", "snowmon-secrets"),
        ("Service", "snowmon-headless"),
        ("Service", "snowmon"),
        ("StatefulSet", "snowmon"),
    }


def test_one_replica_with_its_sqlite_store_on_a_persistent_volume() -> None:
    spec = _statefulset()["spec"]
    assert spec["replicas"] == 1  # SQLite: one writer
    headless = _manifests()[("Service", spec["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    mounts = {m["name"]: m for m in _container()["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]]["mountPath"] == _image_volume()
    store = _k8s_config()["daemon"]["store"]
    assert store.startswith(f"sqlite:///{_image_volume()}/")


def test_config_comes_from_the_configmap_at_the_images_path() -> None:
    container = _container()
    assert container.get("args", []) in ([], ["run", "--config", _image_cmd_config()])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _statefulset()["spec"]["template"]["spec"]["volumes"]}
    config_dir, _, config_file = _image_cmd_config().rpartition("/")
    (config_volume,) = [n for n, v in volumes.items() if "configMap" in v]
    assert mounts[config_volume]["mountPath"] == config_dir
    assert mounts[config_volume]["readOnly"] is True
    configmap = _manifests()[("ConfigMap", volumes[config_volume]["configMap"]["name"])]
    assert config_file in configmap["data"]


def test_secrets_come_from_the_secret_as_files_and_environment() -> None:
    config = _k8s_config()
    secret = _manifests()[("Secret", "snowmon-secrets")]
    keys = set(secret["stringData"])
    container = _container()
    env = {e["name"]: e for e in container["env"]}
    for name in _env_refs(config):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "snowmon-secrets"
        assert ref["key"] in keys
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _statefulset()["spec"]["template"]["spec"]["volumes"]}
    (secret_volume,) = [n for n, v in volumes.items() if "secret" in v]
    mount = mounts[secret_volume]
    assert mount["readOnly"] is True
    items = {i["path"]: i["key"] for i in volumes[secret_volume]["secret"]["items"]}
    for path in _file_refs(config):
        directory, _, name = path.rpartition("/")
        assert directory == mount["mountPath"]
        assert items[name] in keys
    assert volumes[secret_volume]["secret"]["defaultMode"] == 0o400


def test_probes_on_healthz_and_readyz() -> None:
    container = _container()
    port = _listen_port(_k8s_config())
    (named,) = container["ports"]
    assert named == {"name": "http", "containerPort": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert _k8s_config()["web"]["listen"] == f"0.0.0.0:{port}"


def test_shutdown_fits_the_grace_period() -> None:
    pod = _statefulset()["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert _k8s_config()["daemon"]["shutdown_grace"] < 30


def test_resources_and_a_locked_down_security_context() -> None:
    pod = _statefulset()["spec"]["template"]["spec"]
    container = _container()
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_uid()
    assert pod["securityContext"]["fsGroup"] == _image_uid()
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # A read-only root still needs a writable /tmp (SQLite's temporary files).
    volumes = {v["name"]: v for v in pod["volumes"]}
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108
    assert "emptyDir" in volumes[tmp["name"]]
    assert pod["automountServiceAccountToken"] is False


def test_scraped_by_annotations_or_the_service_monitor() -> None:
    template = _statefulset()["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == _listen_port(_k8s_config())
    assert annotations["prometheus.io/path"] == "/metrics"
    monitor = yaml.safe_load(SERVICE_MONITOR.read_text(encoding="utf-8"))
    assert monitor["kind"] == "ServiceMonitor"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [
        d
        for (kind, _), d in _manifests().items()
        if kind == "Service" and wanted.items() <= d["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["snowmon"], "scraped once"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The rules expect job="snowmon": the job label comes from this Service label.
    assert services[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "snowmon"


def test_services_select_the_pods() -> None:
    labels = _statefulset()["spec"]["template"]["metadata"]["labels"]
    assert _statefulset()["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for (kind, _), doc in _manifests().items():
        if kind == "Service":
            assert doc["spec"]["selector"].items() <= labels.items()


# --- Compose ---------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _mounts(service: str) -> dict[str, str]:
    """Container path -> host path (relative to the compose file) of bind mounts."""
    out = {}
    for volume in _compose()["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            out[target] = source
    return out


def _compose_config() -> dict[str, Any]:
    return tomllib.loads((COMPOSE_DIR / "snowmon.toml").read_text(encoding="utf-8"))


def test_compose_has_the_stack() -> None:
    services = _compose()["services"]
    assert set(services) == {"snowmon", "prometheus", "alertmanager", "grafana", "jaeger"}
    for name, service in services.items():
        if "image" in service and name != "snowmon":
            assert re.search(r":v?\d+\.\d+", service["image"]), f"{name}: pin the image"
    assert services["snowmon"]["build"]["context"] == "../.."


def test_compose_bind_mounts_exist() -> None:
    for service in _compose()["services"]:
        for source in _mounts(service).values():
            assert (COMPOSE_DIR / source).exists(), f"{service}: {source}"


def test_compose_runs_the_image_as_built() -> None:
    snowmon = _compose()["services"]["snowmon"]
    assert _mounts("snowmon")[_image_cmd_config()] == "./snowmon.toml"
    named = [v for v in snowmon["volumes"] if not v.startswith(".")]
    assert f"snowmon-data:{_image_volume()}" in named
    assert snowmon["stop_grace_period"] == "30s"
    assert snowmon["read_only"] is True
    config = _compose_config()
    assert config["daemon"]["store"].startswith(f"sqlite:///{_image_volume()}/")
    port = _listen_port(config)
    assert f"127.0.0.1:{port}:{port}" in snowmon["ports"]


def test_compose_env_example_lists_every_secret() -> None:
    example = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert _env_refs(_compose_config()) <= listed
    assert _compose()["services"]["snowmon"]["env_file"] == ".env"
    ignored = (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored
    assert "secrets/" in ignored


def test_compose_prometheus_reads_the_rules_and_scrapes_snowmon() -> None:
    mounts = _mounts("prometheus")
    config_path = "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((COMPOSE_DIR / mounts[config_path]).read_text(encoding="utf-8"))
    (rules_glob,) = config["rule_files"]
    rules_dir = f"/etc/prometheus/{rules_glob.rpartition('/')[0]}"
    assert (COMPOSE_DIR / mounts[rules_dir]).resolve() == (ROOT / "alerts").resolve()
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    (targets,) = jobs["snowmon"]["static_configs"]
    assert targets["targets"] == [f"snowmon:{_listen_port(_compose_config())}"]
    (alerting,) = config["alerting"]["alertmanagers"]
    assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]
    command = _compose()["services"]["prometheus"]["command"]
    assert f"--config.file={config_path}" in command
    assert "--enable-feature=exemplar-storage" in command


def test_compose_alertmanager_uses_the_example_and_the_slack_secret() -> None:
    mounts = _mounts("alertmanager")
    source = (COMPOSE_DIR / mounts["/etc/alertmanager/alertmanager.yml"]).resolve()
    assert source == (ROOT / "alerts" / "alertmanager.example.yml").resolve()
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    (secret,) = _compose()["services"]["alertmanager"]["secrets"]
    assert config["global"]["slack_api_url_file"] == f"/run/secrets/{secret}"
    assert secret in _compose()["secrets"]


def test_grafana_provisions_the_dashboards_and_datasources() -> None:
    mounts = _mounts("grafana")
    assert (COMPOSE_DIR / mounts["/etc/grafana/provisioning"]).is_dir()
    provisioning = COMPOSE_DIR / mounts["/etc/grafana/provisioning"]
    providers = yaml.safe_load((provisioning / "dashboards" / "snowmon.yml").read_text())
    (provider,) = providers["providers"]
    dashboards = (COMPOSE_DIR / mounts[provider["options"]["path"]]).resolve()
    assert dashboards == (ROOT / "dashboards").resolve()
    assert list(dashboards.glob("*.json"))
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    prometheus = by_uid["prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["isDefault"] is True
    assert prometheus["url"] == "http://prometheus:9090"
    for destination in prometheus["jsonData"]["exemplarTraceIdDestinations"]:
        assert destination["name"] == "trace_id"  # the exemplar label snowmon sets
        assert destination["datasourceUid"] in by_uid
    assert by_uid["jaeger"]["url"].startswith("http://jaeger:")
    snowmon_env = _compose()["services"]["snowmon"]["environment"]
    assert snowmon_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


@pytest.mark.tools
def test_compose_prometheus_config_passes_promtool(promtool: str, tmp_path: Path) -> None:
    # Lay out the container's files as Compose mounts them, then check that tree: the
    # rule files are found through the mount, not through a path of this checkout.
    for target, source in _mounts("prometheus").items():
        destination = tmp_path / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        host = COMPOSE_DIR / source
        if host.is_dir():
            shutil.copytree(host, destination)
        else:
            shutil.copy(host, destination)
    config = tmp_path / "etc" / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    rules = sum(
        len(g["rules"])
        for p in (ROOT / "alerts").glob("*.rules.yml")
        for g in yaml.safe_load(p.read_text(encoding="utf-8"))["groups"]
    )
    assert f"SUCCESS: {rules} rules found" in output
