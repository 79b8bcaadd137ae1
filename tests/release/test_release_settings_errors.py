"""A vm.yml that is wrong stops `build.py release` with one line: file, line, key, what was
expected. Each case changes a small valid vm.yml and marks the line at fault with # HERE."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_settings_unit import BASE

from released import build

# The build's own checks, and one of settings' to show the path: every case settings.validate
# finds is tested in process (tests/test_settings_unit.py, which BASE comes from).
# (id, text replaced in BASE, replacement, key path named, what the message says)
CASES = [
    ("version mismatch", "  name: gossipy\n", "  name: gossipy\n  version: 9.9.9  # HERE\n",
     "release.version", "pyproject.toml says '0.0.1'"),
    ("tmp_dir variable", "  name: gossipy\n", '  name: gossipy\n  tmp_dir: "/tmp/${USER}"  # HERE\n',
     "release.tmp_dir", "cannot hold ${VAR}"),
    ("endpoint unknown key", "  port: 4000\n", "  prot: 4000  # HERE\n", "endpoint.prot", "unknown key"),
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
