"""Docker Swarm for the e2e tests: a one-node swarm, and the repository's docker-stack.yml
deployed on it as a stack.

* :func:`one_node_swarm` — the engine as a swarm manager for the duration: it joins (``docker
  swarm init --advertise-addr 127.0.0.1``) and leaves (``--force``, and the docker_gwbridge
  network that joining made) a swarm only if it was in none; an engine already managing a
  swarm is used and left as it is.
* :class:`Stack` — ``docker stack deploy`` / ``docker stack rm`` of the tree's docker-stack.yml
  (the docker CLI, as a user runs it) under a unique name, its images built from the tree with
  the SDK, and its tasks as the SDK lists them. :meth:`Stack.remove` deletes what it made and
  returns what would have been left behind.

No registry: the images are local tags, which a one-node swarm runs with
``--resolve-image never``. This machine's kernel has no IPVS, so the routing mesh and virtual
IPs do not answer: the stack is deployed with the file's host-mode switches (each task
publishes port 4000 on a free host port of its own, found through its task's port status).
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import docker
from docker.errors import DockerException, NotFound

from .e2e_harness import CommandError, ReleaseTree, cluster_view, log, run
from .requirements import missing

SERVICE = "gossipy"  # the service's name in docker-stack.yml
STACK_LABEL = "com.docker.stack.namespace"
GATEWAY_NETWORK = "docker_gwbridge"
# docker-stack.yml's switches for a host without IPVS (README, "Scale out").
HOST_MODE = {"GOSSIPY_PORT_MODE": "host", "GOSSIPY_ENDPOINT_MODE": "dnsrr", "GOSSIPY_PORT": "0"}


@contextmanager
def one_node_swarm(client: docker.DockerClient) -> Iterator[None]:
    """The engine as a swarm manager while the block runs; the swarm state as found after it."""
    info = client.info()["Swarm"]
    state = info.get("LocalNodeState")
    if state == "active":
        if not info.get("ControlAvailable"):
            missing("this engine is a worker of a swarm: the Swarm test needs a manager (or no swarm)")
        log("the engine already manages a swarm: using it, and leaving it as it is")
        yield
        return
    if state != "inactive":
        raise CommandError(f"the engine's swarm state is {state!r}: neither in a swarm nor out of one")
    # Joining a swarm also makes the docker_gwbridge network (the tasks' way out), which leaving
    # keeps: it goes too if it was not there before.
    had_gateway = bool(client.networks.list(names=[GATEWAY_NETWORK]))
    started = time.monotonic()
    client.swarm.init(advertise_addr="127.0.0.1")
    log(f"docker swarm init --advertise-addr 127.0.0.1: ok in {time.monotonic() - started:.1f} s "
        f"(left at the end)")
    try:
        yield
    finally:
        client.swarm.leave(force=True)
        if not had_gateway:
            for network in client.networks.list(names=[GATEWAY_NETWORK]):
                network.remove()
        log("docker swarm leave --force: the engine is in no swarm again, as it was")


@dataclass(frozen=True)
class Task:
    """A running task of the stack's service."""

    slot: int
    container_id: str
    port: int  # its port 4000 on 127.0.0.1
    image: str

    @property
    def short(self) -> str:
        return f"slot {self.slot} ({self.container_id[:12]}, :{self.port})"


def ready(port: int) -> bool:
    """``GET /readyz`` on 127.0.0.1:``port`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Stack:
    """docker-stack.yml of ``tree`` as one stack (see the module docstring)."""

    def __init__(self, client: docker.DockerClient, tree: ReleaseTree) -> None:
        self.client = client
        self.tree = tree
        self.name = f"gossipye2e{uuid.uuid4().hex[:10]}"
        self.service_name = f"{self.name}_{SERVICE}"
        self.images: list[str] = []
        # The file the stack's secret is made from (secrets.file in docker-stack.yml).
        self.cookie_file = tree.path / f"{self.name}.cookie"
        self.cookie_file.write_text(secrets.token_urlsafe(48) + "\n", encoding="utf-8")

    def build_image(self, tag: str, labels: dict[str, str] | None = None) -> str:
        """The tree's Dockerfile built as ``<stack>-gossipy:<tag>``; returns the tag."""
        image = f"{self.name}-gossipy:{tag}"
        log(f"{self.name}: docker build -t {image} {self.tree.path} (labels {labels or {}})")
        started = time.monotonic()
        try:
            self.client.images.build(path=str(self.tree.path), tag=image, labels=labels or {}, rm=True,
                                     forcerm=True)
        except DockerException as exc:
            raise CommandError(f"docker build of {image} failed: {exc}") from None
        self.images.append(image)
        log(f"{self.name}: built {image} in {time.monotonic() - started:.1f} s")
        return image

    def deploy(self, image: str) -> None:
        """``docker stack deploy`` of the file with ``image``."""
        log(f"{self.name}: docker stack deploy with {image}, host-mode ports ({HOST_MODE})")
        run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", "docker-stack.yml",
             self.name], cwd=self.tree.path,
            env={"GOSSIPY_IMAGE": image, "GOSSIPY_COOKIE_FILE": str(self.cookie_file), **HOST_MODE})

    def update_image(self, image: str) -> None:
        """``docker service update --image``: a rolling update by the file's update_config. (A
        second ``docker stack deploy`` would also set the replicas back to the file's.)"""
        run(["docker", "service", "update", "--detach", "--no-resolve-image", "--image", image, self.service_name],
            cwd=self.tree.path)

    def service(self) -> Any:
        return self.client.services.get(self.service_name)

    def scale(self, replicas: int) -> None:
        """``docker service scale``: the SDK's Service.scale resends a spec rebuilt from its own
        arguments, which Swarm takes for a change of every task (all of them are replaced)."""
        run(["docker", "service", "scale", "--detach", f"{self.service_name}={replicas}"], cwd=self.tree.path)

    def update_state(self) -> str | None:
        """The service's UpdateStatus.State (updating, completed, rollback_started, ...)."""
        return (self.service().attrs.get("UpdateStatus") or {}).get("State")

    def tasks(self) -> list[Task]:
        """The running tasks that publish their port, by slot."""
        found = []
        for task in self.service().tasks(filters={"desired-state": "running"}):
            status = task["Status"]
            ports = (status.get("PortStatus") or {}).get("Ports") or []
            container_id = (status.get("ContainerStatus") or {}).get("ContainerID")
            if status["State"] == "running" and ports and container_id:
                found.append(Task(task["Slot"], container_id, ports[0]["PublishedPort"],
                                  task["Spec"]["ContainerSpec"]["Image"]))
        return sorted(found, key=lambda t: t.slot)

    def container(self, task: Task) -> Any:
        return self.client.containers.get(task.container_id)

    def wait_mesh(self, replicas: int, timeout: float = 60.0) -> tuple[list[Task], dict[int, dict[str, Any]]]:
        """Waits until ``replicas`` tasks run and each one's ``/cluster`` (through its host port)
        lists all the others; returns the tasks and their views by slot."""
        started = time.monotonic()
        views: dict[int, Any] = {}
        tasks: list[Task] = []
        while time.monotonic() - started < timeout:
            tasks = self.tasks()
            views = {t.slot: cluster_view(t.port) for t in tasks}
            names = {v["node"] for v in views.values() if v}
            if (len(tasks) == replicas and len(names) == replicas
                    and all(v and {v["node"], *v["nodes"]} == names for v in views.values())):
                log(f"{self.name}: {replicas} tasks meshed after {time.monotonic() - started:.2f} s: "
                    f"{sorted(names)}")
                return tasks, views
            time.sleep(0.25)
        raise AssertionError(f"{self.name}: no mesh of {replicas} tasks within {timeout} s; tasks "
                             f"{[t.short for t in tasks]}, views {views}\n{self.describe_state()}")

    def describe_state(self) -> str:
        """The service's tasks and its containers' log tails, for failure messages."""
        lines = []
        try:
            for task in self.service().tasks():
                status = task["Status"]
                lines.append(f"task slot {task.get('Slot')} {task['ID'][:12]}: {status['State']} "
                             f"{status.get('Err', '')}")
            for container in self.client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={self.name}"}):
                lines.append(f"--- {container.name}: {container.status}")
                lines.append(container.logs(tail=20).decode(errors="replace"))
        except DockerException as exc:
            lines.append(f"(cannot list the stack: {exc})")
        return "\n".join(lines)

    def leftovers(self) -> list[str]:
        """Whatever of the stack still exists: services, containers, networks, secrets."""
        label = {"label": f"{STACK_LABEL}={self.name}"}
        return ([f"service {s.name}" for s in self.client.services.list(filters=label)]
                # sparse: no inspection of each container, which may be gone by then (404)
                + [f"container {c.id[:12]}" for c in self.client.containers.list(all=True, filters=label, sparse=True)]
                + [f"network {n.name}" for n in self.client.networks.list(filters=label)]
                + [f"secret {s.name}" for s in self.client.secrets.list(filters=label)])

    def remove(self, timeout: float = 60.0) -> list[str]:
        """``docker stack rm``, then waits for its containers and network to go; returns what
        was still there after ``timeout`` (then swept with the SDK). Removes the images built.
        Never raises."""
        left: list[str] = []
        try:
            run(["docker", "stack", "rm", self.name], cwd=self.tree.path)
            deadline = time.monotonic() + timeout
            while (left := self.leftovers()) and time.monotonic() < deadline:
                time.sleep(0.5)
            if left:
                log(f"{self.name}: still there {timeout} s after `docker stack rm`: {left}; sweeping")
                self._sweep()
        except (CommandError, DockerException) as exc:
            log(f"{self.name}: removal failed ({exc}); sweeping")
            left = [f"(removal failed: {exc})"]
            self._sweep()
        for image in self.images:
            try:
                self.client.images.remove(image, force=True)
            except NotFound:
                pass
            except DockerException as exc:
                log(f"{self.name}: cannot remove image {image}: {exc}")
        self.images.clear()
        self.cookie_file.unlink(missing_ok=True)
        return left

    def _sweep(self) -> None:
        label = {"label": f"{STACK_LABEL}={self.name}"}
        try:
            for service in self.client.services.list(filters=label):
                service.remove()
            for container in self.client.containers.list(all=True, filters=label):
                container.remove(force=True, v=True)
            for network in self.client.networks.list(filters=label):
                network.remove()
            for secret in self.client.secrets.list(filters=label):
                secret.remove()
        except DockerException as exc:
            log(f"{self.name}: cleanup error (remove by hand: docker stack rm {self.name}): {exc}")
