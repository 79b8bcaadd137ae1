"""What the build reads from the tree: pins, the Python it needs, the archive timestamp."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from release import BuildError
from release.project import Project, check_python, read_pins, read_project, source_date_epoch

from released import REPO


def test_the_repository_s_project() -> None:
    project = read_project(str(REPO))
    assert (project.name, project.version) == ("gossipy", "0.0.1")
    assert read_pins(project.requirements_file) == tuple(
        l for l in (REPO / "requirements.txt").read_text().splitlines() if l and not l.startswith("#"))
    assert check_python(project) == "3.11"


def test_requires_python_is_checked_against_the_build_interpreter(scratch: Path) -> None:
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    project = Project(str(scratch), "x", "1", f">=3.0,!={running}")
    with pytest.raises(BuildError, match=f"this build runs on Python {running}.*requires >=3.0,!={running}"):
        check_python(project)


def test_source_date_epoch_wins_then_git_then_a_fixed_date(scratch: Path) -> None:
    project = Project(str(scratch), "x", "1", "")
    assert source_date_epoch(project, {"SOURCE_DATE_EPOCH": "1700000000"}, "SOURCE_DATE_EPOCH") == \
        (1700000000, "SOURCE_DATE_EPOCH")
    assert source_date_epoch(project, {}, "SOURCE_DATE_EPOCH")[0] == 315532800  # not a git tree
    with pytest.raises(BuildError, match="expected seconds since 1970"):
        source_date_epoch(project, {"SOURCE_DATE_EPOCH": "yesterday"}, "SOURCE_DATE_EPOCH")
    _, where = source_date_epoch(Project(str(REPO), "x", "1", ""), {}, "SOURCE_DATE_EPOCH")
    assert where == "the last commit"
