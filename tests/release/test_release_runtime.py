"""Which Python runs a release: the bundled one (include_python: true) or the target's."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from released import bare_path
from support.server_process import wait_until

RUNTIME = "python-3.11.7"


@pytest.fixture
def broken_copy(prod_root: Path, scratch: Path) -> Path:
    """A copy of the prod release whose runtime a test may damage."""
    copy = scratch / "release"
    shutil.copytree(prod_root, copy, symlinks=True)
    return copy


def test_the_bundled_runtime_is_the_trimmed_standard_library_with_unchecked_bytecode(prod_root: Path) -> None:
    stdlib = prod_root / RUNTIME / "lib" / "python3.11"
    assert (prod_root / RUNTIME / "bin" / "python3.11").is_file()
    assert (prod_root / RUNTIME / "lib" / "libpython3.11.so.1.0").is_file()
    for absent in ("test", "idlelib", "tkinter", "ensurepip", "site-packages", "lib2to3/tests"):
        assert not (stdlib / absent).exists(), absent
    assert not list(stdlib.glob("config-*"))
    assert not list((stdlib / "lib-dynload").glob("_test*"))
    pyc = (stdlib / "__pycache__" / "os.cpython-311.pyc").read_bytes()
    # PEP 552 flags: hash-based and unchecked, so archive mtimes cannot make it stale
    assert int.from_bytes(pyc[4:8], "little") == 0b01
    assert not list((stdlib / "__pycache__").glob("*.opt-*.pyc"))


def test_a_runtime_that_cannot_start_here_stops_with_a_clear_message(
        broken_copy: Path, no_python_path: str, make_node) -> None:
    # an interpreter for another machine: the kernel refuses to run it
    binary = broken_copy / RUNTIME / "bin" / "python3.11"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\xb7\x00" + bytes(48))
    node = make_node(broken_copy, no_python_path)
    for command in ("describe", "foreground", "start", "ping"):
        done = node.run(command)
        assert done.returncode == 1, (command, done.stderr)
        assert "the bundled Python runtime cannot start on this machine" in done.stderr
        assert "Debian GNU/Linux" in done.stderr  # where it can run
        assert "include_python: false" in done.stderr  # what to do instead
    assert not (node.tmp / "gossipy.pid").exists()


def test_a_runtime_whose_libpython_does_not_load_stops_with_the_loader_s_reason(
        broken_copy: Path, no_python_path: str, make_node) -> None:
    # (Deleting it would prove nothing here: the binary's RUNPATH finds the build machine's.)
    (broken_copy / RUNTIME / "lib" / "libpython3.11.so.1.0").write_bytes(b"not a shared object")
    done = make_node(broken_copy, no_python_path).run("describe")
    assert done.returncode == 1
    assert "cannot start on this machine" in done.stderr
    assert "error while loading shared libraries" in done.stderr and "libpython3.11.so.1.0" in done.stderr


def test_a_missing_system_library_is_named_with_the_package_to_install(
        broken_copy: Path, no_python_path: str, make_node) -> None:
    for ssl in (broken_copy / RUNTIME / "lib" / "python3.11" / "lib-dynload").glob("_ssl.*.so"):
        ssl.write_bytes(b"not a shared object")
    done = make_node(broken_copy, no_python_path).run("describe")
    assert done.returncode == 1
    assert "cannot load a system library the node needs" in done.stderr
    assert "ImportError: " in done.stderr  # Python's own reason, not the version it printed
    assert "apt-get install libssl3" in done.stderr


def test_include_python_false_runs_on_the_target_s_python_3_11(
        dev_root: Path, system_python_path: str, make_node) -> None:
    assert not any(p.name.startswith("python-") for p in dev_root.iterdir())
    contract = json.loads((dev_root / "releases/0.0.1/release.json").read_text())
    assert contract["include_python"] is False and contract["python_dir"] is None
    node = make_node(dev_root, system_python_path)
    described = node.run("describe")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["environment"] == "dev"
    process = node.foreground()
    wait_until(node.serving, 30, "the dev release to serve")
    assert Path(f"/proc/{process.pid}/exe").resolve().name.startswith("python3.11")
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0, node.foreground_log()


def test_include_python_false_checks_the_target_s_python(dev_root: Path, scratch: Path, make_node) -> None:
    fake = scratch / "python3"
    fake.write_text("#!/bin/sh\necho 3.10\n")
    fake.chmod(0o755)
    wrong = make_node(dev_root, bare_path(scratch / "old", {"python3": str(fake)})).run("describe")
    assert wrong.returncode == 1
    assert "is Python 3.10; this release (include_python: false) needs Python 3.11" in wrong.stderr
    none = make_node(dev_root, bare_path(scratch / "none")).run("describe")
    assert none.returncode == 1
    assert "no python3 on PATH" in none.stderr and "needs Python 3.11" in none.stderr
