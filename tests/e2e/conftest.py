"""Fixtures for the e2e tests: a reachable Docker engine (skip locally, fail under CI=true),
the base image, release trees built once per session, and compose projects removed pass or fail.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Iterator

import docker
import pytest

import harness
from harness import Cluster, ReleaseTree


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.e2e)


def pytest_configure(config: pytest.Config) -> None:
    """Progress lines go to the terminal as they happen, past output capture, so a CI log
    shows where a run stopped (for every user of the harness in this pytest run)."""

    def write(line: str) -> None:
        # Looked up per line: the terminal reporter registers after this hook may run.
        reporter = config.pluginmanager.getplugin("terminalreporter")
        capture = config.pluginmanager.getplugin("capturemanager")
        if reporter is None or capture is None:
            print(line, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    harness.set_log_sink(write)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = harness.docker_engine()
    yield client
    client.close()


@pytest.fixture(scope="session")
def trees_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    path = tmp_path_factory.mktemp("e2e-trees")
    yield path
    shutil.rmtree(path, ignore_errors=True)  # the release builds are tens of MB each


@pytest.fixture(scope="session")
def base_tree(docker_client, trees_dir) -> ReleaseTree:
    """The repository as it is, released with `python build.py release --env=prod`."""
    tree = ReleaseTree.copy_repository(trees_dir / "base")
    tree.release()
    return tree


@pytest.fixture(scope="session")
def three_node_tree(base_tree: ReleaseTree, trees_dir) -> ReleaseTree:
    """The article's ws3 step on a copy: ws3 in the compose file and in the prod sync_nodes,
    then `release.clean` and `release`."""
    tree = base_tree.copy(trees_dir / "three")
    tree.add_compose_service("ws3", harness.HOST_PORTS["ws3"])
    tree.add_sync_node(harness.node("ws3"))
    assert harness.node("ws3") in tree.prod_sync_nodes(), f"{tree.vm_yml}: the edit did not take"
    tree.build("release.clean")
    assert not tree.tarball.exists(), f"release.clean left {tree.tarball}"
    tree.release()
    return tree


@pytest.fixture
def make_cluster(docker_client) -> Iterator[Callable[[ReleaseTree], Cluster]]:
    """Makes compose projects; removes all they created when the test ends, pass or fail."""
    made: list[Cluster] = []

    def make(tree: ReleaseTree) -> Cluster:
        cluster = Cluster(docker_client, tree)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.remove()
