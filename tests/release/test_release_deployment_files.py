"""The Dockerfile names the release tarball literally, as the article's does: a version bump in
pyproject.toml must come with the same change there, or the image build adds nothing."""

from __future__ import annotations

from released import REPO, TARBALL


def test_the_dockerfile_and_dockerignore_name_the_tarball_of_this_version() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    assert f"ADD {TARBALL} /www/gossipy" in dockerfile
    assert f"!{TARBALL}" in dockerignore
