"""The deployment files, checked without an orchestrator: ``deploy/kubernetes/gossipy.yaml``
against the Kubernetes OpenAPI schema (kubernetes-validate, strict, offline), and it and
``docker-stack.yml`` against what gossipy reads: the environment a pod or task gets loads into
the settings it means, and the ports, probe paths and grace periods are the node's. No
Kubernetes cluster runs anywhere in the suite (README, "Scale out"); the stack file runs on a
one-node swarm in tests/e2e/test_swarm.py."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import pytest
import yaml

from server import settings
from server.settings import SettingsError

from support import ROOT
from support.server_process import ServerProcess

MANIFEST = ROOT / "deploy" / "kubernetes" / "gossipy.yaml"
STACK = ROOT / "docker-stack.yml"
# The Kubernetes version the manifests are validated against: one kubernetes-validate bundles
# (requirements-dev.txt pins the tool, so a new release of it changes nothing here).
K8S_VERSION = "1.34.0"
STRONG_COOKIE = "kP3v9Qx2LmZr7TfW8yBn4HcJ6dSe1UaG"
# What the downward API would fill in on a cluster.
POD_FIELDS = {"status.podIP": "10.42.1.7", "metadata.namespace": "chat"}
TASK_IP = "10.0.1.5"  # what `hostname -i` says in a Swarm task


def manifest() -> dict[str, dict[str, Any]]:
    """The manifest's documents by ``Kind/name``."""
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def pod_spec() -> dict[str, Any]:
    return manifest()["StatefulSet/gossipy"]["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    return only


def container_ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container()["ports"]}


def mount_of(volume_kind: str) -> tuple[str, dict[str, Any]]:
    """(mountPath, volume) of the container's one volume of that kind (secret, emptyDir)."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"] if volume_kind in v}
    (mounted,) = [m for m in container()["volumeMounts"] if m["name"] in volumes]
    return mounted["mountPath"], volumes[mounted["name"]]


def pod_environ(root: Path) -> dict[str, str]:
    """The container's environment as the kubelet makes it (downward API fields, ``$(VAR)`` of
    earlier variables), with the secret's mount moved under ``root``, where the test writes it."""
    environ: dict[str, str] = {}
    for var in container()["env"]:
        if "valueFrom" in var:
            environ[var["name"]] = POD_FIELDS[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            environ[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: environ.get(m[1], m[0]), var["value"])
    secret_mount, _ = mount_of("secret")
    cookie_file = environ[settings.ENV_COOKIE_FILE]
    assert cookie_file.startswith(secret_mount + "/"), f"{cookie_file} is not in the secret's volume"
    environ[settings.ENV_COOKIE_FILE] = str(root / cookie_file.lstrip("/"))
    return environ


def write_cookie(environ: dict[str, str], cookie: str) -> None:
    path = Path(environ[settings.ENV_COOKIE_FILE])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cookie + "\n", encoding="utf-8")


def prod_settings(environ: dict[str, str]) -> settings.Settings:
    """What the image's release loads: the prod environment of vm.yml, then the environment."""
    return settings.load(str(ROOT / "vm.yml"), "prod", environ=environ)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any connection or name lookup fails the test: the schemas must come with the package."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network use during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


def test_the_manifests_are_valid_kubernetes_objects_offline(no_network: None) -> None:
    documents = manifest()
    assert sorted(documents) == ["PodDisruptionBudget/gossipy", "Secret/gossipy-cookie", "Service/gossipy",
                                 "Service/gossipy-headless", "StatefulSet/gossipy"]
    for name, document in documents.items():
        try:
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{MANIFEST.name}: {name}: {path}: {exc.message} (Kubernetes {K8S_VERSION}, strict)")
        except kubernetes_validate.SchemaNotFoundError as exc:  # the CLI only warns about these
            pytest.fail(f"{MANIFEST.name}: {name}: {exc.message}")


def test_a_misspelt_field_is_caught_in_strict_mode(no_network: None) -> None:
    statefulset = manifest()["StatefulSet/gossipy"]
    statefulset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFilesytem"):
        kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)


def test_every_variable_set_is_one_gossipy_reads_or_one_the_others_use() -> None:
    read = {value for name, value in vars(settings).items() if name.startswith("ENV_")}
    values = " ".join(var.get("value", "") for var in container()["env"])
    for var in container()["env"]:
        assert var["name"] in read or f"$({var['name']})" in values, (
            f"{MANIFEST.name}: {var['name']} is neither read by server/settings.py nor used by another variable")
    assert settings.ENV_COOKIE not in {var["name"] for var in container()["env"]}, "the cookie belongs in the Secret"


def test_a_pod_gets_the_settings_of_a_node_that_finds_its_peers(tmp_path: Path) -> None:
    environ = pod_environ(tmp_path)
    write_cookie(environ, STRONG_COOKIE)
    loaded = prod_settings(environ)
    distribution = loaded.distribution
    assert (distribution.node, distribution.longnames) == (f"gossipy@{POD_FIELDS['status.podIP']}", True)
    assert distribution.sync_nodes_optional == ()
    assert distribution.cookie == settings.Cookie(STRONG_COOKIE)

    headless = manifest()["Service/gossipy-headless"]
    fqdn = f"{headless['metadata']['name']}.{POD_FIELDS['metadata.namespace']}.svc.cluster.local"
    assert distribution.dns_cluster_query == (fqdn,)

    ports = container_ports()
    assert loaded.endpoint.port == ports["http"] and distribution.port == ports["dist"]
    tmp_mount, tmp_volume = mount_of("emptyDir")
    assert loaded.tmp_dir is not None and Path(loaded.tmp_dir).is_relative_to(tmp_mount), (
        f"RELEASE_TMP={loaded.tmp_dir} is not on the writable volume {tmp_mount}")
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_placeholder_cookie_stops_the_node(tmp_path: Path) -> None:
    environ = pod_environ(tmp_path)
    key = Path(environ[settings.ENV_COOKIE_FILE]).name
    _, volume = mount_of("secret")
    secret = manifest()[f"Secret/{volume['secret']['secretName']}"]
    write_cookie(environ, secret["stringData"][key])
    with pytest.raises(SettingsError, match="prod cookie is too weak"):
        prod_settings(environ)


def test_the_services_reach_the_pods_and_their_ports() -> None:
    documents = manifest()
    statefulset = documents["StatefulSet/gossipy"]
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert documents["PodDisruptionBudget/gossipy"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for name, target in (("gossipy-headless", "dist"), ("gossipy", "http")):
        spec = documents[f"Service/{name}"]["spec"]
        assert spec["selector"].items() <= labels.items(), f"Service {name} selects no pod"
        assert [port["targetPort"] for port in spec["ports"]] == [target]
    headless = documents["Service/gossipy-headless"]["spec"]
    assert (headless["clusterIP"], headless["publishNotReadyAddresses"]) == ("None", True)
    assert statefulset["spec"]["serviceName"] == "gossipy-headless"


def test_the_probes_ask_paths_a_node_serves(node: ServerProcess) -> None:
    probes = {kind: container()[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for kind, probe in probes.items():
        assert probe["port"] in container_ports(), f"{kind} asks port {probe['port']}, which the pod does not name"
        with urllib.request.urlopen(node.url(probe["path"]), timeout=5) as response:
            assert response.status == 200, f"{kind}: GET {probe['path']} answered {response.status}"


def test_the_grace_period_covers_the_drain_and_the_shutdown(tmp_path: Path) -> None:
    environ = pod_environ(tmp_path)
    write_cookie(environ, STRONG_COOKIE)
    endpoint = prod_settings(environ).endpoint
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace >= endpoint.drain_seconds + endpoint.shutdown_timeout + 5, (
        f"terminationGracePeriodSeconds {grace} leaves under 5 s beyond drain_seconds "
        f"{endpoint.drain_seconds} + shutdown_timeout {endpoint.shutdown_timeout}")
    readiness = container()["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= endpoint.drain_seconds, (
        "a draining pod would still get new clients when it closes its websockets")


# ---- docker-stack.yml ----------------------------------------------------------------------------

def stack() -> tuple[str, dict[str, Any]]:
    """(name, definition) of the stack file's one service."""
    ((name, service),) = yaml.safe_load(STACK.read_text(encoding="utf-8"))["services"].items()
    return name, service


def task_environ(root: Path) -> dict[str, str]:
    """A task's environment: the file's, RELEASE_NODE as the entrypoint's shell sets it, and the
    secret's mount moved under ``root`` with a strong cookie in it."""
    _, service = stack()
    environ = {key: str(value) for key, value in service["environment"].items()}
    (secret,) = service["secrets"]
    assert environ[settings.ENV_COOKIE_FILE] == f"/run/secrets/{secret}", "the cookie is not the secret's file"
    cookie_file = root / secret
    cookie_file.write_text(STRONG_COOKIE + "\n", encoding="utf-8")
    environ[settings.ENV_COOKIE_FILE] = str(cookie_file)
    command = service["entrypoint"][-1]
    assert command.endswith("exec ./bin/gossipy foreground"), f"the node would not be PID 1: {command}"
    node = re.search(rf"{settings.ENV_NODE}=(\S+)", command.replace("$$(hostname -i)", TASK_IP))
    assert node, f"the entrypoint sets no {settings.ENV_NODE}: {command}"
    environ[settings.ENV_NODE] = node[1]
    return environ


def test_a_swarm_task_gets_the_settings_of_a_node_that_finds_its_peers(tmp_path: Path) -> None:
    name, service = stack()
    distribution = prod_settings(task_environ(tmp_path)).distribution
    assert (distribution.node, distribution.longnames) == (f"gossipy@{TASK_IP}", True)
    assert distribution.dns_cluster_query == (f"tasks.{name}",)
    assert distribution.sync_nodes_optional == ()
    assert distribution.cookie == settings.Cookie(STRONG_COOKIE)
    assert [port["target"] for port in service["ports"]] == [prod_settings(task_environ(tmp_path)).endpoint.port]
    assert settings.ENV_COOKIE not in service["environment"], "the cookie belongs in the secret"


def test_the_swarm_health_check_and_grace_fit_the_node(tmp_path: Path) -> None:
    _, service = stack()
    endpoint = prod_settings(task_environ(tmp_path)).endpoint
    # the image's check, asked more often: a task is routed to and updates move on once healthy
    assert "test" not in service["healthcheck"] and service["healthcheck"]["interval"] == "2s"
    [check] = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if "GET /readyz " in line]
    assert "/dev/tcp/127.0.0.1/${PORT:-4000}" in check and "' 200 '" in check
    grace = float(service["stop_grace_period"].removesuffix("s"))
    assert grace >= endpoint.drain_seconds + endpoint.shutdown_timeout + 5, (
        f"stop_grace_period {grace} s leaves under 5 s beyond drain_seconds {endpoint.drain_seconds} "
        f"+ shutdown_timeout {endpoint.shutdown_timeout}")
    update = service["deploy"]["update_config"]
    assert (update["parallelism"], update["order"], update["failure_action"]) == (1, "start-first", "rollback")
