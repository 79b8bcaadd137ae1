"""The tarball writer alone: the same tree gives the same bytes, whatever the file system says."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from release.archive import write_tarball


def _tree(root: Path, mode: int, mtime: int) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "releases" / "1").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o700 if mode else 0o755)
    (root / "releases" / "1" / "data").write_text("data\n")
    (root / "releases" / "1" / "data").chmod(mode or 0o644)
    (root / "bin" / "link").symlink_to("tool")
    for path in root.rglob("*"):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def test_the_same_tree_gives_the_same_bytes_whatever_the_modes_and_times(scratch: Path) -> None:
    first = _tree(scratch / "a", 0, 1_000_000)
    second = _tree(scratch / "b", 0o600, 2_000_000)
    write_tarball(str(first), str(scratch / "a.tar.gz"), 315532800)
    write_tarball(str(second), str(scratch / "b.tar.gz"), 315532800)
    assert (scratch / "a.tar.gz").read_bytes() == (scratch / "b.tar.gz").read_bytes()


def test_entries_are_relative_sorted_and_normalised_and_the_output_is_left_out(scratch: Path) -> None:
    root = _tree(scratch / "a", 0, 1_000_000)
    out = root / "releases" / "1" / "a.tar.gz"
    assert write_tarball(str(root), str(out), 1_234_567_890) == 6
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["bin", "bin/link", "bin/tool", "releases", "releases/1", "releases/1/data"]
    assert members["bin/tool"].mode == 0o755 and members["releases/1/data"].mode == 0o644
    assert members["bin/link"].issym() and members["bin/link"].linkname == "tool"
    assert {m.mtime for m in members.values()} == {1_234_567_890}
