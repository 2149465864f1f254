"""Offline checks of deploy/ (run through deploy/check.sh, which provides the packages).

- deploy/k8s: every manifest validates against the Kubernetes schemas (strict:
  unknown fields are errors), and kustomization.yaml lists exactly those files.
- deploy/helm/memoryd: `helm lint --strict` through Helm's Go SDK, then renders
  with several value sets, each output validated like the plain manifests and
  checked for what the chart promises (native sidecar, probes, non-root,
  read-only root, existingSecret); missing required values must fail to render.
- deploy/compose.yaml: services, depends_on targets and conditions, healthchecks.
- deploy/Dockerfile and .dockerignore: the promised structure, COPY sources exist.

Exits 1 on the first failing group, after printing every problem found in it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
CHART = ROOT / "deploy" / "helm" / "memoryd"
# The oldest version with native sidecars on by default, and the newest the
# schemas cover.
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SECRETS = {"secrets": {"postgresUrl": "postgresql://u:p@db:5432/m", "redisUrl": "redis://r:6379/0"}}

problems: list[str] = []


def fail(message: str) -> None:
    problems.append(message)
    print(f"FAIL {message}")


def finish_group(name: str) -> None:
    if problems:
        print(f"deploy check: {name}: {len(problems)} problem(s)")
        sys.exit(1)
    print(f"ok   {name}")


def documents(text: str) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(text):
        if document:
            yield document


def validate(where: str, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = list(resources)
    if not seen:
        fail(f"{where}: no Kubernetes resources")
    for resource in seen:
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                fail(f"{where}: {name} (Kubernetes {version}) at {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                fail(f"{where}: {name}: no schema for Kubernetes {version}: {error}")
    return seen


def check_validator_is_strict() -> None:
    """A typo'd field must fail: otherwise every pass below would mean nothing."""
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {},
        "dta": {},
    }
    try:
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)
    except kubernetes_validate.ValidationError:
        return
    fail("kubernetes-validate accepted an unknown field: strict validation is not in effect")


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def check_pod(where: str, resource: dict[str, Any]) -> None:
    """What every memoryd pod promises: non-root, read-only root, limits."""
    spec = pod_spec(resource)
    name = resource["metadata"]["name"]
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        fail(f"{where}: {name}: pod securityContext.runAsNonRoot is not true")
    for container in spec.get("initContainers", []) + spec["containers"]:
        label = f"{where}: {name}/{container['name']}"
        security = container.get("securityContext", {})
        if not security.get("readOnlyRootFilesystem"):
            fail(f"{label}: readOnlyRootFilesystem is not true")
        if security.get("allowPrivilegeEscalation", True):
            fail(f"{label}: allowPrivilegeEscalation is not false")
        if "memory" not in container.get("resources", {}).get("limits", {}):
            fail(f"{label}: no memory limit")
        mounts = {m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for missing in sorted(mounts - volumes):
            fail(f"{label}: mounts volume {missing!r} that the pod does not define")


def check_sidecar(where: str, resource: dict[str, Any], port: int = 50051) -> None:
    spec = pod_spec(resource)
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    if [c["name"] for c in sidecars] != ["memoryd"]:
        fail(f"{where}: expected one native sidecar 'memoryd', found {sidecars!r}")
        return
    sidecar = sidecars[0]
    if sidecar.get("args") != ["serve"]:
        fail(f"{where}: the sidecar runs {sidecar.get('args')!r}, not ['serve']")
    for probe in ("startupProbe", "readinessProbe"):
        if sidecar.get(probe, {}).get("grpc", {}).get("port") != port:
            fail(f"{where}: the sidecar's {probe} is not a grpc probe on port {port}")
    if "livenessProbe" not in sidecar:
        fail(f"{where}: the sidecar has no livenessProbe")
    names = [c["name"] for c in spec["initContainers"]]
    if "memoryd-migrate" in names and names.index("memoryd-migrate") > names.index("memoryd"):
        fail(f"{where}: migrations run after the sidecar starts")


def check_env_sources(where: str, resources: list[dict[str, Any]], secret: str) -> None:
    """Every envFrom names the ConfigMap rendered here and the expected Secret."""
    configmaps = {r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap"}
    for resource in resources:
        if resource["kind"] != "Deployment":
            continue
        spec = pod_spec(resource)
        for container in spec.get("initContainers", []) + spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source and source["configMapRef"]["name"] not in configmaps:
                    fail(f"{where}: {container['name']} reads a ConfigMap not rendered here")
                if "secretRef" in source and source["secretRef"]["name"] != secret:
                    fail(f"{where}: {container['name']} reads Secret {source['secretRef']}")


# --- plain manifests -------------------------------------------------------


def check_k8s() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(files - listed):
        fail(f"deploy/k8s/{name} is not listed in kustomization.yaml")
    for name in sorted(listed - files):
        fail(f"kustomization.yaml lists {name}, which does not exist")
    resources: list[dict[str, Any]] = []
    for name in sorted(files):
        resources += validate(f"deploy/k8s/{name}", documents((K8S / name).read_text()))
    kinds = sorted(r["kind"] for r in resources)
    expected = ["ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget", "Secret"]
    if kinds != expected:
        fail(f"deploy/k8s: kinds {kinds}, expected {expected}")
    for resource in resources:
        if resource["kind"] == "Deployment":
            check_pod("deploy/k8s", resource)
    agent = [r for r in resources if r["metadata"]["name"] == "agent"]
    if agent:
        check_sidecar("deploy/k8s agent", agent[0])
    check_env_sources("deploy/k8s", resources, "memoryd-secrets")
    check_pdb_selects_workers("deploy/k8s", resources)


def check_pdb_selects_workers(where: str, resources: list[dict[str, Any]]) -> None:
    pdbs = [r for r in resources if r["kind"] == "PodDisruptionBudget"]
    workers = [
        r
        for r in resources
        if r["kind"] == "Deployment" and r["metadata"]["name"].endswith("worker")
    ]
    for pdb in pdbs:
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [
            w
            for w in workers
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        if len(matched) != 1:
            name = pdb["metadata"]["name"]
            fail(f"{where}: PodDisruptionBudget {name} selects {len(matched)} worker Deployments")


# --- Helm chart --------------------------------------------------------------


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="demo", namespace="agents", is_install=True)
    resources: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            resources += documents(text)
    return resources


def check_helm() -> None:
    report = helm.lint(CHART, SECRETS, strict=True, kube_version="v1.29.0")
    for message in report.get("messages", []):
        if message.get("severity", 0) >= 2:
            fail(f"helm lint: {message.get('path')}: {message.get('error')}")
    for error in report.get("errors", []):
        fail(f"helm lint: {error}")

    defaults = validate("chart (defaults)", render(SECRETS))
    names = sorted((r["kind"], r["metadata"]["name"]) for r in defaults)
    expected = sorted(
        [
            ("ConfigMap", "demo-memoryd-config"),
            ("Secret", "demo-memoryd-secrets"),
            ("Deployment", "demo-memoryd-agent"),
            ("Deployment", "demo-memoryd-worker"),
            ("PodDisruptionBudget", "demo-memoryd-worker"),
        ]
    )
    if names != expected:
        fail(f"chart (defaults) renders {names}, expected {expected}")
    for resource in defaults:
        if resource["kind"] == "Deployment":
            check_pod("chart (defaults)", resource)
            if resource["metadata"]["name"].endswith("agent"):
                check_sidecar("chart (defaults)", resource)
    check_env_sources("chart (defaults)", defaults, "demo-memoryd-secrets")
    check_pdb_selects_workers("chart (defaults)", defaults)

    custom = {
        "secrets": {"existingSecret": "memoryd-prod"},
        "image": {"repository": "registry.example.com/memoryd", "tag": "1.2.3"},
        "settings": {"LOG_LEVEL": "DEBUG", "SESSION_TTL": "PT12H"},
        "sidecar": {
            "port": 6000,
            "startupProbe": {"grpc": {"port": 6000}, "periodSeconds": 2},
            "readinessProbe": {"grpc": {"port": 6000}},
            "livenessProbe": {"tcpSocket": {"port": 6000}},
        },
        "worker": {"replicas": 5, "pdb": {"minAvailable": 2}},
        "migrate": {"enabled": False},
    }
    rendered = validate("chart (existingSecret, custom)", render(custom))
    if any(r["kind"] == "Secret" for r in rendered):
        fail("chart (existingSecret): renders a Secret although existingSecret is set")
    check_env_sources("chart (existingSecret, custom)", rendered, "memoryd-prod")
    for resource in rendered:
        if resource["kind"] == "ConfigMap":
            data = resource["data"]
            if (
                data.get("MEMORYD_SESSION_TTL") != "PT12H"
                or data.get("MEMORYD_LOG_LEVEL") != "DEBUG"
            ):
                fail(f"chart (custom): settings not rendered as MEMORYD_* variables: {data}")
        if resource["kind"] == "Deployment":
            spec = pod_spec(resource)
            images = {c["image"] for c in spec["initContainers"] if c["name"].startswith("memoryd")}
            if images != {"registry.example.com/memoryd:1.2.3"}:
                fail(f"chart (custom): memoryd image {images}")
            if any(c["name"] == "memoryd-migrate" for c in spec["initContainers"]):
                fail("chart (custom): migrate.enabled=false still runs migrations")
            if resource["metadata"]["name"].endswith("agent"):
                check_sidecar("chart (custom)", resource, port=6000)
            if (
                resource["metadata"]["name"].endswith("worker")
                and resource["spec"]["replicas"] != 5
            ):
                fail("chart (custom): worker.replicas not applied")

    only_workers = render(
        {**SECRETS, "agent": {"enabled": False}, "worker": {"pdb": {"enabled": False}}}
    )
    kinds = sorted(r["kind"] for r in validate("chart (workers only)", only_workers))
    if kinds != ["ConfigMap", "Deployment", "Secret"]:
        fail(f"chart (workers only) renders {kinds}")

    try:
        render({})
    except helm.HelmError as error:
        if "secrets.postgresUrl is required" not in str(error):
            fail(f"chart without secrets fails, but not on the required URL: {error}")
    else:
        fail("chart renders without secrets.postgresUrl or existingSecret")


# --- compose ---------------------------------------------------------------


def check_compose() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services: dict[str, Any] = compose.get("services", {})
    expected = {"postgres", "valkey", "migrate", "memoryd", "worker"}
    if set(services) != expected:
        fail(f"compose.yaml services {sorted(services)}, expected {sorted(expected)}")
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        if "image" not in service:
            fail(f"compose.yaml: {name} has no image")
        for dependency, how in service.get("depends_on", {}).items():
            if dependency not in services:
                fail(f"compose.yaml: {name} depends on unknown service {dependency}")
            if how.get("condition") not in conditions:
                fail(f"compose.yaml: {name} -> {dependency}: condition {how.get('condition')!r}")
            if how.get("condition") == "service_healthy" and (
                "healthcheck" not in services.get(dependency, {})
                or services[dependency]["healthcheck"].get("disable")
            ):
                fail(f"compose.yaml: {name} waits for {dependency} healthy; it has no healthcheck")
    for name in ("memoryd", "worker", "migrate"):
        service = services.get(name, {})
        if service.get("command") != [{"memoryd": "serve"}.get(name, name)]:
            fail(f"compose.yaml: {name} runs {service.get('command')!r}")
        env = service.get("environment", {})
        if not {"MEMORYD_POSTGRES_URL", "MEMORYD_REDIS_URL"} <= set(env):
            fail(f"compose.yaml: {name} lacks the store URLs")
    if services.get("postgres", {}).get("image", "").split(":")[0] != "pgvector/pgvector":
        fail("compose.yaml: postgres is not the pgvector image")
    if services.get("memoryd", {}).get("healthcheck", {}).get("disable"):
        fail("compose.yaml: memoryd's health check is disabled")
    for name in ("migrate", "memoryd", "worker"):
        needs = services.get(name, {}).get("depends_on", {})
        if (
            name != "migrate"
            and needs.get("migrate", {}).get("condition") != "service_completed_successfully"
        ):
            fail(f"compose.yaml: {name} does not wait for migrate to complete")


# --- Dockerfile --------------------------------------------------------------


def check_dockerfile() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    stages = [line for line in instructions if line.upper().startswith("FROM ")]
    if len(stages) < 2:
        fail("Dockerfile: not multi-stage")
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail("Dockerfile: the final stage runs as root")
    for needed in (
        'ENTRYPOINT ["memoryd"]',
        'CMD ["serve"]',
        "HEALTHCHECK ",
        "MEMORYD_LISTEN=0.0.0.0:50051",
    ):
        if needed not in text:
            fail(f"Dockerfile: missing {needed!r}")
    for line in instructions:
        if line.upper().startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                if not source.startswith("--") and not (ROOT / source).exists():
                    fail(f"Dockerfile: COPY source {source} does not exist")
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("server", "workers", "clients/python", "requirements.lock"):
        if needed in ignored:
            fail(f".dockerignore excludes {needed}, which the image needs")
    if not re.search(r"--extra-index-url\s+\S+", text):
        fail("Dockerfile: no extra index for the CPU build of torch")


def main() -> None:
    check_validator_is_strict()
    finish_group("kubernetes-validate is strict")
    check_k8s()
    finish_group(f"deploy/k8s manifests (Kubernetes {', '.join(KUBE_VERSIONS)}, strict)")
    check_helm()
    finish_group(f"helm chart: lint, 3 renders validated (Helm SDK {helm.helm_sdk_version()})")
    check_compose()
    finish_group("deploy/compose.yaml structure")
    check_dockerfile()
    finish_group("deploy/Dockerfile and .dockerignore structure")


if __name__ == "__main__":
    main()
