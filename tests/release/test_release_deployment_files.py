"""The Dockerfile adds the release tarball by a path without the version (build.py writes the
tarball there too), so a version bump in pyproject.toml leaves the image build working."""

from __future__ import annotations

import re

from released import IMAGE_TARBALL, REPO, VERSION


def test_the_dockerfile_and_dockerignore_name_the_tarball_without_a_version() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    assert f"ADD {IMAGE_TARBALL} /www/gossipy" in dockerfile
    assert f"!{IMAGE_TARBALL}" in dockerignore
    for text in (dockerfile, "\n".join(dockerignore)):
        # the version as a word of its own (the health check's 127.0.0.1 holds "0.0.1")
        assert "releases/" not in text and not re.search(rf"(?<![\d.]){re.escape(VERSION)}(?![\d.])", text)
