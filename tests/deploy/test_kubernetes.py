"""Kubernetes manifests: Deployments, Services, probes on the app's real paths, PDBs, a
migrate Job, the configuration as a ConfigMap and the secrets as Secrets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, load_yaml, load_yaml_documents
from tests.deploy.support import (
    ALL_INTERFACES,
    CONFIG_FILE,
    SWITCHBOARD_VARIABLES,
    deploy_config,
    http_paths,
    is_command,
    router_stop_timeout,
    secret_variables,
)

K8S = DEPLOY / "k8s"


def _objects() -> list[dict[str, Any]]:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    objects = []
    for resource in kustomization["resources"]:
        objects.extend(load_yaml_documents(K8S / resource))
    return objects


def _find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in _objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod_spec(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = _find(kind, name)["spec"]["template"]["spec"]
    return spec


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    kinds = sorted(o["kind"] for o in _objects())
    assert kinds.count("Deployment") == 2
    assert kinds.count("Service") == 2
    assert kinds.count("PodDisruptionBudget") == 2
    assert {"Job", "ConfigMap", "Secret", "Namespace"} <= set(kinds)


@pytest.mark.parametrize(
    ("name", "command"), [("switchboard-router", "router"), ("switchboard-adapters", "adapters")]
)
def test_deployments_run_the_right_command_with_probes_resources_and_a_budget(
    name: str, command: str
) -> None:
    deployment = _find("Deployment", name)
    pod = _pod_spec("Deployment", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == "switchboard"
    assert container["args"] == [command]
    assert is_command(command)
    environment = _environment(container)
    port = deploy_config({"SWITCHBOARD_PORT": environment["SWITCHBOARD_PORT"]["value"]}).http.port
    (declared,) = container["ports"]
    assert declared["containerPort"] == port
    assert environment["SWITCHBOARD_HOST"]["value"] == ALL_INTERFACES
    assert environment["SWITCHBOARD_LOG_FORMAT"]["value"] == "json"
    assert environment["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "switchboard-database",
        "key": "DATABASE_URL",
    }
    assert environment["SWITCHBOARD_LOG_DIGEST_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "switchboard-database",
        "key": "SWITCHBOARD_LOG_DIGEST_KEY",
    }
    logs = {"SWITCHBOARD_LOG_DIGEST_KEY"}  # one key of the log digests for every pod
    assert set(environment) - SWITCHBOARD_VARIABLES - logs <= secret_variables("api")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in http_paths()
        assert get["port"] in (declared["name"], declared["containerPort"])
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert config_volume["configMap"]["name"] == "switchboard-config"
    assert (
        environment["SWITCHBOARD_CONFIG"]["value"]
        == mounts[config_volume["name"]] + "/switchboard.toml"
    )
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in http_paths()
    assert int(annotations["prometheus.io/port"]) == port

    service = _find("Service", name)
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in (declared["name"], port)
    budget = _find("PodDisruptionBudget", name)
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2


def test_routers_get_longer_than_their_flush_to_stop() -> None:
    pod = _pod_spec("Deployment", "switchboard-router")
    assert pod["terminationGracePeriodSeconds"] > router_stop_timeout()


def test_the_adapters_get_the_provider_secrets_the_config_names() -> None:
    spec = _pod_spec("Deployment", "switchboard-adapters")
    (container,) = spec["containers"]
    environment = _environment(container)
    assert environment["SWITCHBOARD_PUBLIC_URL"]["value"].startswith("https://")
    # a mounted secret (refreshed by the kubelet) named by SWITCHBOARD_SECRETS_FILE
    assert "envFrom" not in container
    secrets_dir = environment["SWITCHBOARD_SECRETS_FILE"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == secrets_dir]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    providers = _find("Secret", volume["secret"]["secretName"])
    assert set(providers["stringData"]) == secret_variables("channels")
    assert not secret_variables("api") & set(_environment(container))
    database = _find("Secret", "switchboard-database")
    assert set(database["stringData"]) == {"DATABASE_URL", "SWITCHBOARD_LOG_DIGEST_KEY"}


def test_the_routers_get_the_api_secret_the_config_names() -> None:
    (router,) = _pod_spec("Deployment", "switchboard-router")["containers"]
    assert "envFrom" not in router  # routers do not see provider secrets
    environment = _environment(router)
    for variable in secret_variables("api"):
        reference = environment[variable]["valueFrom"]["secretKeyRef"]
        assert reference["key"] in _find("Secret", reference["name"])["stringData"]


def test_the_migrate_job_runs_switchboard_migrate() -> None:
    pod = _pod_spec("Job", "switchboard-migrate")
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    assert is_command("migrate")
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert "DATABASE_URL" in _environment(container)
    assert set(_environment(container)) <= SWITCHBOARD_VARIABLES


def test_the_configmap_is_the_deploy_configuration_and_it_loads(tmp_path: Any) -> None:
    data = _find("ConfigMap", "switchboard-config")["data"]["switchboard.toml"]
    assert data == CONFIG_FILE.read_text()
    copy = tmp_path / "switchboard.toml"
    copy.write_text(data)
    from switchboard.config import load_config

    config = load_config({}, copy)
    assert config.domains
    assert config.kafka.partitions >= 2
