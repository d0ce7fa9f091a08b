"""The compose file and the image: real Apache Kafka and PostgreSQL, a migrate one-shot,
adapters and two routers with the variables, commands, ports and probes the code uses."""

from __future__ import annotations

import re
import tomllib
from typing import Any
from urllib.parse import urlsplit

from tests.deploy.conftest import DEPLOY, ROOT, load_yaml
from tests.deploy.support import (
    ALL_INTERFACES,
    SWITCHBOARD_VARIABLES,
    deploy_config,
    http_paths,
    is_command,
    router_stop_timeout,
    seconds,
    secret_variables,
)

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(DEPLOY / "compose.yaml")["services"]
    return services


def _switchboard_services() -> dict[str, Any]:
    return {
        name: service
        for name, service in _services().items()
        if service.get("image", "").startswith("switchboard:")
    }


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return str(command[0] if isinstance(command, list) else command.split()[0])


def test_the_stack_has_kafka_postgres_migrate_adapters_two_routers_prometheus_grafana() -> None:
    services = _services()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    commands = {name: _command(s) for name, s in _switchboard_services().items()}
    assert sorted(commands.values()) == ["adapters", "migrate", "router", "router"]
    assert all(is_command(command) for command in commands.values())
    assert not is_command("no-such-command")


def test_switchboard_services_are_built_from_the_dockerfile() -> None:
    for name, service in _switchboard_services().items():
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name


def test_the_environment_is_what_the_code_reads() -> None:
    logs = {"SWITCHBOARD_LOG_DIGEST_KEY"}  # log_digest_key_env: every process that logs
    secrets = {
        "adapters": secret_variables("channels") | logs,
        "router": secret_variables("api") | logs,
        "migrate": set(),
    }
    for name, service in _switchboard_services().items():
        environment = {key: str(value) for key, value in service["environment"].items()}
        # Each role gets the variables Switchboard reads and its own secrets, no others.
        assert set(environment) - SWITCHBOARD_VARIABLES == secrets[_command(service)], name
        assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SWITCHBOARD_CONFIG"} <= set(environment)
        assert environment["SWITCHBOARD_LOG_FORMAT"] == "json"
        # The file each service mounts is the file the variable names, and it loads.
        mounts = dict(v.split(":")[:2] for v in service.get("volumes", []))
        assert mounts["./switchboard.toml"] == environment["SWITCHBOARD_CONFIG"], name
        config = deploy_config(environment)
        if _command(service) != "migrate":
            assert environment["SWITCHBOARD_HOST"] == ALL_INTERFACES
            assert config.http.host == ALL_INTERFACES
            assert all(p.endswith(f":{config.http.port}") for p in service.get("ports", []))
        assert config.kafka.bootstrap_servers == "kafka:9092"
    assert "SWITCHBOARD_PUBLIC_URL" in _switchboard_services()["adapters"]["environment"]
    assert secrets["adapters"]
    assert secrets["router"] == {"SWITCHBOARD_ADMIN_TOKEN", "SWITCHBOARD_LOG_DIGEST_KEY"}


def test_the_urls_point_at_the_kafka_and_postgres_services() -> None:
    services = _services()
    kafka = services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    postgres = services["postgres"]["environment"]
    for service in _switchboard_services().values():
        url = urlsplit(service["environment"]["DATABASE_URL"])
        assert (url.hostname, url.port, url.username, url.password, url.path) == (
            "postgres",
            5432,
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "/" + postgres["POSTGRES_DB"],
        )


def test_routers_and_adapters_start_after_the_migration_and_may_flush() -> None:
    for name, service in _switchboard_services().items():
        if _command(service) == "migrate":
            assert service["restart"] == "no"
            continue
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert seconds(service["stop_grace_period"]) > router_stop_timeout(), name


def test_prometheus_scrapes_every_switchboard_process_and_loads_the_alerts() -> None:
    services = _services()
    prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name, service in _switchboard_services().items():
        if _command(service) != "migrate":
            port = deploy_config(service["environment"]).http.port
            assert f"{name}:{port}" in targets
    assert all(
        job.get("metrics_path", "/metrics") in http_paths()
        for job in prometheus["scrape_configs"]
        if job["job_name"].startswith("switchboard")
    )
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("./"))
    assert mounts["./prometheus/alerts.yaml"] == "/etc/prometheus/" + prometheus["rule_files"][0]
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def test_the_dockerfile_is_small_non_root_and_probes_healthz() -> None:
    text = DOCKERFILE.read_text()
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2
    assert all("${PYTHON_IMAGE}" in line for line in stages)
    installs = [line for line in lines if "pip install" in line]
    assert "embedded" not in " ".join(installs)
    # Dependencies only from the service's lock, then the project without resolving again.
    assert any("--require-hashes --no-deps -r requirements-service.lock" in i for i in installs)
    assert any(
        re.search(r"pip install --no-deps --no-build-isolation \.( |$)", i) for i in installs
    )
    assert not [i for i in installs if "--no-deps" not in i]
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("root", "0")
    healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n")[0]
    assert "urllib.request" in healthcheck
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck
    assert "/healthz" in http_paths()
    assert 'ENTRYPOINT ["switchboard"]' in lines
    cmd = [line for line in lines if line.startswith("CMD ")][-1]  # the last is the image's
    assert is_command(re.findall(r'"([^"]+)"', cmd)[0])
    # Every package the project installs (pyproject's packages.find) is in the image.
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packages["packages"]["find"]["include"]:
        package = pattern.removesuffix("*")
        assert f"COPY {package} ./{package}" in lines, package
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
        if line.startswith("ENV ") or line.startswith("SWITCHBOARD_"):
            for name in re.findall(r"\b(SWITCHBOARD_[A-Z_]+)=", line):
                assert name in SWITCHBOARD_VARIABLES, name
    assert f"EXPOSE {deploy_config().http.port}" in lines
