"""deploy/k8s and deploy/compose.yaml keep the promises docs/deploy.md makes about them.

Every overlay is rendered with kubectl's built-in Kustomize and read back: probes, the drain
arithmetic, the security context, secrets only by reference, the GPU overlay's scheduling, and
the autoscaler's custom metric against the server's own metric name. Schema validation
(kubernetes-validate --strict) and checkov run in `make deploy-check`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.http.app import LIFESPAN_DRAIN_S
from modelserve.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "gpu")
# Settings that carry a credential: never a literal value in a manifest.
SECRET_SETTINGS = {"MODELSERVE_AUTH__JWT_SECRET", "MODELSERVE_DATABASE_URL", "MODELSERVE_REDIS_URL"}


def kubectl() -> str:
    local = ROOT / ".venv-deploy" / "bin" / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if found is None:
        if os.environ.get("MODELSERVE_REQUIRE_SERVICES") == "1":
            pytest.fail("kubectl is not installed (`make deploy-check` installs it)")
        pytest.skip("kubectl is not installed (`make deploy-check` installs it in .venv-deploy)")
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def test_probes_and_drain(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    deployment = one(docs, "Deployment", "modelserve")
    spec = deployment["spec"]["template"]["spec"]
    (server,) = spec["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/livez"
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # slow model loads
    config = one(docs, "ConfigMap", "modelserve-config")["data"]
    graceful = float(config["MODELSERVE_SERVER__GRACEFUL_TIMEOUT_S"])
    command = server["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    # The pod is killed only after: endpoints gone (preStop), requests in flight (graceful
    # timeout) and the lifespan's engine drain.
    needed = float(command[1]) + graceful + LIFESPAN_DRAIN_S
    assert spec["terminationGracePeriodSeconds"] >= needed
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_security_context(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    for spec in pod_specs(docs):
        assert spec["automountServiceAccountToken"] is False
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "limits" in container["resources"]


def test_secrets_are_referenced_never_inlined(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    assert not [d for d in docs if d["kind"] == "Secret"]
    config = one(docs, "ConfigMap", "modelserve-config")["data"]
    assert not SECRET_SETTINGS & set(config)
    for spec in pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                if env["name"] in SECRET_SETTINGS:
                    assert "value" not in env
                    assert env["valueFrom"]["secretKeyRef"]["name"] == "modelserve-secrets"


def test_migration_job_runs_db_upgrade_and_pods_wait_for_it(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    job = one(docs, "Job", "modelserve-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    spec = one(docs, "Deployment", "modelserve")["spec"]["template"]["spec"]
    (wait,) = spec["initContainers"]
    assert "modelserve db current" in " ".join(wait["command"])


def test_autoscaler_uses_the_servers_queue_depth_metric(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    names = {m.name for m in Metrics().registry.collect()}
    hpa = one(docs, "HorizontalPodAutoscaler", "modelserve")
    custom = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert custom == ["modelserve_queue_depth"]
    assert custom[0] in names
    adapter = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-rules.yaml").read_text())
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert [r["name"]["as"] for r in rules] == custom


def test_gpu_overlay_asks_for_a_gpu_node() -> None:
    docs = render("gpu")
    spec = one(docs, "Deployment", "modelserve")["spec"]["template"]["spec"]
    (server,) = spec["containers"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    config = one(docs, "ConfigMap", "modelserve-config")["data"]
    assert config["MODELSERVE_DEVICE"] == "cuda"
    assert config["MODELSERVE_SERVER__WORKERS"] == "1"  # one process per GPU


def test_compose_order_and_secrets() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("api-1", "api-2"):
        api = services[name]
        assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert api["read_only"] is True
        assert set(api["secrets"]) == {"jwt_secret", "database_url"}
        assert "environment" not in api
    assert services["migrate"]["command"] == ["db", "upgrade"]
    for service in services.values():
        for value in (service.get("environment") or {}).values():
            assert "://" not in str(value)  # no connection string with a password inline
    env = (ROOT / "deploy" / "modelserve.env").read_text()
    settings = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    # Redis has no password on the compose network (internal, no way out): its URL is not a
    # secret and says so by carrying no credentials. The other two are Docker secrets.
    assert not (SECRET_SETTINGS - {"MODELSERVE_REDIS_URL"}) & set(settings)
    assert "@" not in settings["MODELSERVE_REDIS_URL"]
    graceful = float(settings["MODELSERVE_SERVER__GRACEFUL_TIMEOUT_S"])
    grace = services["api-1"]["stop_grace_period"]
    assert float(grace.rstrip("s")) >= graceful + LIFESPAN_DRAIN_S
