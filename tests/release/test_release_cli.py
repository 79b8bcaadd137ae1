"""`python build.py release.init | release.clean`, and the build's own errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from released import REPO, TARBALL, build
from support.checkout import copy_repository

COOKIE = re.compile(r'cookie: "([A-Za-z0-9]+)"')


@pytest.fixture
def bare_project(scratch: Path) -> Path:
    """A copy of the repository without vm.yml or builds."""
    path = copy_repository(scratch / "project")
    (path / "vm.yml").unlink()
    return path


def _validated(path: Path) -> dict:
    from server import settings

    doc = settings.read_document(str(path))
    settings.validate(doc)
    return doc.data


def test_release_init_writes_the_article_s_vm_yml_with_fresh_cookies(bare_project: Path) -> None:
    done = build(bare_project, "release.init")
    assert done.returncode == 0, done.stderr
    text = (bare_project / "vm.yml").read_text()
    data = _validated(bare_project / "vm.yml")
    assert data["release"] == {"name": "gossipy", "default_environment": "prod"}
    dev, prod = data["environments"]["dev"], data["environments"]["prod"]
    assert dev["include_python"] is False and prod["include_python"] is True
    assert prod["node"] == {"sname": "gossipy"}
    assert prod["endpoint"] == {"check_origin": False}
    assert prod["kernel"] == {"sync_nodes_optional": ["gossipy@ws1", "gossipy@ws2"], "sync_nodes_timeout": 10000}
    assert "INSECURE" in text  # check_origin: false is commented as the article's insecure setting
    assert data["node"]["dist_port"] == 4370 and data["endpoint"]["port"] == 4000
    assert data["endpoint"]["check_origin"] is True
    cookies = COOKIE.findall(text)
    assert len(cookies) == 2 and cookies[0] != cookies[1]
    assert all(len(c) == 64 for c in cookies)

    again = build(bare_project, "release.init")
    assert again.returncode == 1 and "--force" in again.stderr
    assert (bare_project / "vm.yml").read_text() == text
    forced = build(bare_project, "release.init", "--force")
    assert forced.returncode == 0
    assert not set(COOKIE.findall((bare_project / "vm.yml").read_text())) & set(cookies)


def test_the_repository_s_vm_yml_is_release_init_s_output(bare_project: Path) -> None:
    build(bare_project, "release.init")
    fresh = COOKIE.sub("COOKIE", (bare_project / "vm.yml").read_text())
    assert COOKIE.sub("COOKIE", (REPO / "vm.yml").read_text()) == fresh


def test_release_clean_removes_the_env_s_release_or_all(project: Path, prod_build, dev_tarball: Path,
                                                       scratch: Path) -> None:
    copy = scratch / "built"
    shutil.copytree(project, copy, symlinks=True)
    dev = build(copy, "release.clean", "--env=dev")
    assert dev.returncode == 0 and "removed _build/dev/rel/" in dev.stdout
    assert not (copy / "_build" / "dev").exists() and (copy / TARBALL).exists()
    nothing = build(copy, "release.clean", "--env=dev")
    assert nothing.returncode == 0 and "nothing to remove" in nothing.stdout
    default = build(copy, "release.clean")  # vm.yml's default environment: prod
    assert default.returncode == 0 and not (copy / "_build").exists()
    shutil.copytree(project / "_build", copy / "_build", symlinks=True)
    everything = build(copy, "release.clean", "--all")
    assert everything.returncode == 0 and not (copy / "_build").exists()
    assert "removed _build/dev/rel/" in everything.stdout and "removed _build/prod/rel/" in everything.stdout


def test_release_without_vm_yml_says_how_to_make_one(bare_project: Path) -> None:
    done = build(bare_project, "release", "--env=prod")
    assert done.returncode == 1 and "release.init" in done.stderr


def test_an_unknown_environment_names_the_environments_line(project: Path) -> None:
    done = build(project, "release", "--env=staging")
    assert done.returncode == 2
    assert "no environment named 'staging'; have dev, prod" in done.stderr
    assert re.search(r"vm\.yml, line \d+: environments:", done.stderr)


def test_an_unpinned_requirement_stops_the_build(bare_project: Path) -> None:
    build(bare_project, "release.init")
    (bare_project / "requirements.txt").write_text("# run time\ntornado>=6\n")
    done = build(bare_project, "release", "--env=prod")
    assert done.returncode == 1
    assert "requirements.txt, line 2: 'tornado>=6' is not pinned as name==version" in done.stderr


def test_a_missing_pex_is_named_with_the_way_to_install_it(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    from release import BuildError, pexfile

    monkeypatch.setattr(pexfile.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BuildError, match=r"pex is not installed for .*pip install -r requirements-dev.txt"):
        pexfile.build_pex(str(scratch), ["requirements.txt"], str(scratch), "server.__main__:main",
                          str(scratch / "x.pex"))


def test_usage_on_no_or_a_wrong_command(project: Path) -> None:
    for args in ((), ("release.build",)):
        done = build(project, *args)
        assert done.returncode == 2 and "release.init" in done.stderr and "release.clean" in done.stderr

