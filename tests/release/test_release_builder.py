"""`python build.py release`: the layout, the contract, the embedded settings, reproducibility."""

from __future__ import annotations

import gzip
import json
import tarfile
import zipfile
from pathlib import Path

import yaml

from released import HOST_VAR, IMAGE_TARBALL, REPO, TARBALL


def test_the_build_prints_each_step(prod_build) -> None:
    steps = [line for line in prod_build.output.splitlines() if line.startswith("==> ")]
    assert [s.split()[1] for s in steps[:-1]] == ["reading", "caching", "building", "bundling",
                                                  "embedding", "writing", "packing"]
    assert steps[-1].startswith("==> built gossipy 0.0.1 (prod) in ")
    assert f"tarball: {TARBALL}" in prod_build.output
    assert "already cached" in prod_build.rebuild_output  # the second build needs no network


def test_two_builds_of_the_same_tree_give_byte_identical_tarballs(prod_build) -> None:
    first, second = prod_build.tarball.read_bytes(), prod_build.rebuilt_tarball.read_bytes()
    assert first == second, "the rebuilt tarball differs"


def test_the_dockerfile_s_tarball_is_the_same_bytes_without_a_version_in_its_path(project: Path,
                                                                                    prod_build) -> None:
    assert (project / IMAGE_TARBALL).read_bytes() == prod_build.rebuilt_tarball.read_bytes()
    assert f"the same bytes at: {IMAGE_TARBALL}" in prod_build.output


def test_the_tarball_unpacks_anywhere_with_fixed_owner_modes_and_times(prod_build) -> None:
    raw = prod_build.tarball.read_bytes()
    assert raw[4:8] == bytes(4)  # gzip header mtime 0
    with tarfile.open(prod_build.tarball) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {"bin/gossipy", "releases/0.0.1/gossipy.pex", "releases/0.0.1/vm.yml",
            "releases/0.0.1/release.json", "python-3.11.7/bin/python3.11"} <= set(names)
    assert not any(n.startswith(("/", "..")) or n.endswith(".tar.gz") for n in names)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert len({m.mtime for m in members}) == 1
    assert {m.mode for m in members if m.isfile()} == {0o600, 0o644, 0o755}
    assert next(m for m in members if m.name == "bin/gossipy").mode == 0o755
    # the settings hold the cookie
    assert [m.name for m in members if m.mode == 0o600] == ["releases/0.0.1/vm.yml"]
    with gzip.open(prod_build.tarball) as gz:
        assert gz.read(1)  # a valid gzip stream


def test_the_release_holds_the_pex_the_settings_and_the_contract(prod_root: Path) -> None:
    release = prod_root / "releases" / "0.0.1"
    contract = json.loads((release / "release.json").read_text())
    pins = [l for l in (REPO / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert contract["name"] == "gossipy" and contract["version"] == "0.0.1"
    assert contract["environment"] == "prod" and contract["include_python"] is True
    assert contract["python_dir"] == "python-3.11.7" and contract["python_version"] == "3.11"
    assert contract["requirements"] == pins
    assert contract["entry_point"] == "server.__main__:main"
    assert contract["pex"] == "releases/0.0.1/gossipy.pex"
    # the chat is part of gossipy: nothing else packed, no pins of its own
    assert (contract["app"], contract["app_source"], contract["app_requirements"]) == ("server.chat", None, [])

    with zipfile.ZipFile(release / "gossipy.pex") as pex:
        names = pex.namelist()
        info = json.loads(pex.read("PEX-INFO"))
    assert "server/__main__.py" in names and "server/static/index.html" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names if n.startswith("server/"))
    assert sorted(info["requirements"]) == sorted(pins)
    assert info["entry_point"] == "server.__main__:main"


def test_the_embedded_settings_are_the_prod_environment_with_variables_kept(project: Path, prod_root: Path) -> None:
    embedded = yaml.safe_load((prod_root / "releases/0.0.1/vm.yml").read_text())
    source = yaml.safe_load((project / "vm.yml").read_text())
    assert embedded["release"] == {"name": "gossipy", "environment": "prod", "version": "0.0.1"}
    assert embedded["endpoint"]["host"] == f"${{{HOST_VAR}}}"  # substituted at boot, not at build
    assert embedded["endpoint"]["check_origin"] is False
    assert embedded["node"]["sname"] == "gossipy"
    assert embedded["node"]["cookie"] == source["environments"]["prod"]["cookie"]
    assert embedded["kernel"]["sync_nodes_optional"] == ["gossipy@ws1", "gossipy@ws2"]
    assert "environments" not in embedded
