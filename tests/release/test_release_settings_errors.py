"""Every way vm.yml can be wrong stops `build.py release` with one line: file, line, key, what
was expected. Each case changes a small valid vm.yml and marks the line at fault with # HERE."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from released import build

BASE = """\
release:
  name: gossipy
  default_environment: prod
environments:
  dev:
    include_python: false
    cookie: "devcookie-devcookie"
  prod:
    include_python: true
    cookie: "prodcookie-prodcookie-prodcookie"
node:
  dist_port: 4370
endpoint:
  port: 4000
kernel:
  sync_nodes_timeout: 10000
"""

# (id, text replaced in BASE, replacement, key path named, what the message says)
CASES = [
    ("unknown section", "kernel:\n", "nodes:  # HERE\n  dist_port: 1\nkernel:\n", "nodes", "unknown section"),
    ("release unknown key", "  name: gossipy\n", "  nmae: gossipy  # HERE\n", "release.nmae", "unknown key"),
    ("release name type", "  name: gossipy\n", "  name: 7  # HERE\n", "release.name", "expected the release name"),
    ("default environment", "  default_environment: prod\n", "  default_environment: staging  # HERE\n",
     "release.default_environment", "no environment named 'staging'"),
    ("version mismatch", "  name: gossipy\n", "  name: gossipy\n  version: 9.9.9  # HERE\n",
     "release.version", "pyproject.toml says '0.0.1'"),
    ("tmp_dir variable", "  name: gossipy\n", '  name: gossipy\n  tmp_dir: "/tmp/${USER}"  # HERE\n',
     "release.tmp_dir", "cannot hold ${VAR}"),
    ("section not a mapping", "endpoint:\n  port: 4000\n", "endpoint: 4000  # HERE\n", "endpoint",
     "expected a mapping"),
    ("endpoint unknown key", "  port: 4000\n", "  prot: 4000  # HERE\n", "endpoint.prot", "unknown key"),
    ("port range", "  port: 4000\n", "  port: 70000  # HERE\n", "endpoint.port", "expected a TCP port number"),
    ("check_origin type", "  port: 4000\n", "  port: 4000\n  check_origin: 5  # HERE\n",
     "endpoint.check_origin", "expected true, false, or a list of allowed origins"),
    ("server_timeout type", "  port: 4000\n", "  port: 4000\n  server_timeout: soon  # HERE\n",
     "endpoint.server_timeout", "expected seconds, a positive number"),
    ("max_frame_size zero", "  port: 4000\n", "  port: 4000\n  max_frame_size: 0  # HERE\n",
     "endpoint.max_frame_size", "expected bytes, a positive integer"),
    ("dist_port type", "  dist_port: 4370\n", "  dist_port: 4370x  # HERE\n", "node.dist_port",
     "expected a TCP port number"),
    ("sname type", "  dist_port: 4370\n", "  dist_port: 4370\n  sname: 5  # HERE\n", "node.sname",
     "expected a short node name"),
    ("sname and name", "node:\n", "node:  # HERE\n  sname: gossipy\n  name: gossipy@10.0.0.1\n", "node",
     "set either sname or name, not both"),
    ("sync list type", "  sync_nodes_timeout: 10000\n",
     "  sync_nodes_timeout: 10000\n  sync_nodes_optional: gossipy@ws1  # HERE\n",
     "kernel.sync_nodes_optional", "expected a list of node names"),
    ("sync timeout negative", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: -5  # HERE\n",
     "kernel.sync_nodes_timeout", "expected milliseconds, an integer >= 0"),
    ("net_ticktime zero", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: 10000\n  net_ticktime: 0  # HERE\n",
     "kernel.net_ticktime", "expected seconds, a positive number"),
    ("kernel unknown key", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: 10000\n  sync_node_optional: []  # HERE\n",
     "kernel.sync_node_optional", "unknown key"),
    ("environments empty", BASE[BASE.index("environments:"):BASE.index("node:")], "environments: {}  # HERE\n",
     "environments", "expected a mapping of environment names"),
    ("environment unknown key", "    include_python: true\n", "    include_python: true\n    include_erts: true  # HERE\n",
     "environments.prod.include_erts", "unknown key"),
    ("include_python type", "    include_python: true\n", '    include_python: "yes"  # HERE\n',
     "environments.prod.include_python", "expected true or false"),
    ("cookie type", '    cookie: "prodcookie-prodcookie-prodcookie"\n', "    cookie: 12345  # HERE\n",
     "environments.prod.cookie", "expected the shared cluster secret"),
    ("environment override value", "    include_python: true\n",
     "    include_python: true\n    endpoint:\n      port: -1  # HERE\n", "environments.prod.endpoint.port",
     "expected a TCP port number"),
    ("environment override key", "    include_python: true\n",
     "    include_python: true\n    kernel:\n      sync_node_optional: []  # HERE\n",
     "environments.prod.kernel.sync_node_optional", "unknown key"),
    ("environment names twice", "    include_python: true\n",
     "    include_python: true\n    node:  # HERE\n      sname: a\n      name: a@10.0.0.1\n",
     "environments.prod.node", "set either sname or name, not both"),
]


@pytest.fixture(scope="module")
def small_project(workdir: Path, project: Path) -> Path:
    """Just what step one of a build reads: build.py, release/, server/, pyproject, pins."""
    path = workdir / "errors-project"
    for name in ("build.py", "pyproject.toml", "requirements.txt"):
        path.mkdir(exist_ok=True)
        shutil.copy2(project / name, path / name)
    for package in ("release", "server"):
        shutil.copytree(project / package, path / package)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_error_names_file_line_and_key(small_project: Path, case: tuple[str, str, str, str, str]) -> None:
    _, old, new, key, expected = case
    assert old in BASE
    text = BASE.replace(old, new, 1)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if l.endswith("# HERE"))
    (small_project / "vm.yml").write_text(text)
    done = build(small_project, "release", "--env=prod")
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"vm.yml, line {line}: {key}: " in message
    assert expected in message


def test_invalid_yaml_names_the_line(small_project: Path) -> None:
    text = BASE.replace("  port: 4000\n", "  port: 4000: 4001\n")
    (small_project / "vm.yml").write_text(text)
    done = build(small_project, "release", "--env=prod")
    assert done.returncode == 2
    line = text.splitlines().index("  port: 4000: 4001") + 1
    assert f"vm.yml, line {line}: not valid YAML" in done.stderr


def test_the_base_document_is_valid(small_project: Path) -> None:
    from server import settings

    (small_project / "vm.yml").write_text(BASE)
    settings.validate(settings.read_document(str(small_project / "vm.yml")))
