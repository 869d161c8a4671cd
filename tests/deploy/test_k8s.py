"""Kubernetes manifests: rendered by `kubectl kustomize` (offline) and validated against the
Kubernetes 1.30 OpenAPI schemas bundled in the kubernetes-validate package (strict: unknown
fields fail). KEDA and Prometheus Operator objects have no bundled schema; they are checked
against the objects they refer to."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S_VERSION = "1.30"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}


@pytest.fixture(scope="module")
def rendered(kubectl: str, root: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl, "kustomize", str(root / "deploy" / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def secret_template(root: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (root / "deploy" / "k8s" / "secret.template.yaml").read_text()
    )
    return document


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}"
    return matches[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_kustomization_renders_every_required_object(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    assert kinds == sorted(
        [
            ("Namespace", "adaprune"),
            ("ConfigMap", "adaprune-config"),
            ("Job", "adaprune-migrate"),
            ("Deployment", "adaprune-api"),
            ("Service", "adaprune-api"),
            ("Deployment", "adaprune-worker"),
            ("Service", "adaprune-worker-metrics"),
            ("TriggerAuthentication", "adaprune-redis"),
            ("ScaledObject", "adaprune-worker"),
            ("ServiceMonitor", "adaprune-api"),
            ("ServiceMonitor", "adaprune-worker"),
        ]
    )
    namespaced = [d for d in rendered if d["kind"] != "Namespace"]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"adaprune"}


def test_core_objects_validate_against_the_kubernetes_schema(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    core = [d for d in rendered if d["kind"] not in CRD_KINDS] + [secret_template]
    for document in core:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_field(rendered: list[dict[str, Any]]) -> None:
    worker = find(rendered, "Deployment", "adaprune-worker")
    broken = yaml.safe_load(yaml.safe_dump(worker))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 600
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_worker_asks_for_one_gpu_and_time_to_checkpoint(rendered: list[dict[str, Any]]) -> None:
    worker = find(rendered, "Deployment", "adaprune-worker")
    spec = worker["spec"]["template"]["spec"]
    main = container(worker)
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["terminationGracePeriodSeconds"] >= 600
    pre_stop = main["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[1:3] == ["/usr/local/bin/adaprune-worker-probe", "drain"]
    drain_timeout = float(pre_stop[pre_stop.index("--timeout") + 1])
    assert drain_timeout < spec["terminationGracePeriodSeconds"]
    assert main["args"] == ["worker", "--queue", "gpu"]
    assert {"name": "metrics", "containerPort": 9100} in main["ports"]


def test_api_probes_health_and_readiness(rendered: list[dict[str, Any]]) -> None:
    api = container(find(rendered, "Deployment", "adaprune-api"))
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    migrate = container(find(rendered, "Job", "adaprune-migrate"))
    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == api["image"]


def test_pods_run_as_the_image_non_root_user(rendered: list[dict[str, Any]]) -> None:
    for kind, name in (
        ("Deployment", "adaprune-api"),
        ("Deployment", "adaprune-worker"),
        ("Job", "adaprune-migrate"),
    ):
        pod = find(rendered, kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001


def test_every_secret_and_config_key_the_pods_read_is_defined(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    config = find(rendered, "ConfigMap", "adaprune-config")["data"]
    secret = secret_template["stringData"]
    assert not set(config) & set(secret)
    for key in ("DATABASE_URL", "REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "REPLACE_ME" in secret[key]
    for key in ("ARTIFACT_URL", "ADAPRUNE_HEARTBEAT_S", "ADAPRUNE_DEVICE", "ADAPRUNE_METRICS_PORT"):
        assert key in config
    for document in rendered:
        if document["kind"] in {"Deployment", "Job"}:
            sources = container(document)["envFrom"]
            assert {"configMapRef": {"name": "adaprune-config"}} in sources
            assert {"secretRef": {"name": secret_template["metadata"]["name"]}} in sources


def test_keda_scales_the_worker_on_the_gpu_queue(
    rendered: list[dict[str, Any]], secret_template: dict[str, Any]
) -> None:
    scaled = find(rendered, "ScaledObject", "adaprune-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "adaprune-worker"
    find(rendered, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    redis = triggers["redis"]
    assert redis["metadata"]["listName"] == "gpu"
    assert int(redis["metadata"]["listLength"]) >= 1
    auth = find(rendered, "TriggerAuthentication", redis["authenticationRef"]["name"])
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret_template["metadata"]["name"]
        assert ref["key"] in secret_template["stringData"]
    assert scaled["spec"]["maxReplicaCount"] >= scaled["spec"]["minReplicaCount"]


def test_service_monitors_select_the_services_and_ports(rendered: list[dict[str, Any]]) -> None:
    expected = {"adaprune-api": "adaprune-api", "adaprune-worker": "adaprune-worker-metrics"}
    for monitor_name, service_name in expected.items():
        monitor = find(rendered, "ServiceMonitor", monitor_name)
        service = find(rendered, "Service", service_name)
        labels = service["metadata"]["labels"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert labels[monitor["spec"]["jobLabel"]] == monitor_name
        port_names = {port["name"] for port in service["spec"]["ports"]}
        assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
        pods = [
            d
            for d in rendered
            if d["kind"] == "Deployment"
            and service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1
    worker_service = find(rendered, "Service", "adaprune-worker-metrics")
    assert worker_service["spec"]["clusterIP"] == "None"
