"""Bundling the build machine's CPython into a release (include_python, Distillery's include_erts).

What is copied: ``bin/pythonX.Y`` (+ ``python3``), the shared libpython, and the standard
library without its tests, IDLE, Tkinter, ensurepip and site-packages. The interpreter finds
its standard library from its own location, so the folder runs wherever it is unpacked, as
long as libpython is found (bin/gossipy sets LD_LIBRARY_PATH) and the OS and libc match.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

from . import BuildError

# Not needed to run a server, and together most of the standard library's size.
_SKIP_DIRS = {"__pycache__", "site-packages", "dist-packages", "test", "tests", "idle_test",
              "idlelib", "tkinter", "turtledemo", "ensurepip"}
_SKIP_EXTENSION_PREFIXES = ("_test", "_ctypes_test", "_xxtestfuzz", "xxlimited", "_tkinter")
# The flags word of a PEP 552 pyc: hash-based, source not checked.
_UNCHECKED_HASH = 0b01


def build_platform() -> str:
    """Where a bundled runtime can run, for bin/gossipy's message on a mismatch."""
    try:
        system = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        system = f"{platform.system()} {platform.release()}"
    libc, libc_version = platform.libc_ver()
    return ", ".join(filter(None, [system, platform.machine(), f"{libc} {libc_version}".strip()]))


def runtime_dir_name() -> str:
    return f"python-{platform.python_version()}"


def _skip(directory: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in _SKIP_DIRS or n.startswith("config-")}
    if os.path.basename(directory) == "lib-dynload":
        skipped |= {n for n in names if n.startswith(_SKIP_EXTENSION_PREFIXES)}
    return skipped


def bundle_python(dest: str) -> tuple[int, int]:
    """Copies the running CPython (its base installation, even from a venv) into ``dest``;
    returns how many modules got a pyc and how many will compile at boot."""
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        raise BuildError("include_python bundles CPython on Linux only; build with "
                         "include_python: false to use the target's python3")
    version = sysconfig.get_config_var("VERSION")
    executable = os.path.join(sysconfig.get_config_var("BINDIR"), f"python{version}")
    stdlib = sysconfig.get_paths()["stdlib"]
    dynload = sysconfig.get_config_var("DESTSHARED")
    if not os.path.isfile(executable) or not os.path.isdir(stdlib):
        raise BuildError(f"cannot find this Python's installation ({executable}, {stdlib})")
    if os.path.commonpath([stdlib, dynload]) != stdlib:
        raise BuildError(f"this Python keeps its extension modules in {dynload}, outside its "
                         f"standard library; bundling such a layout is not supported")

    os.makedirs(os.path.join(dest, "bin"))
    shutil.copy2(executable, os.path.join(dest, "bin", f"python{version}"))
    os.symlink(f"python{version}", os.path.join(dest, "bin", "python3"))
    lib = os.path.join(dest, "lib")
    shutil.copytree(stdlib, os.path.join(lib, f"python{version}"), ignore=_skip, symlinks=True)
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        soname = sysconfig.get_config_var("INSTSONAME")
        shutil.copy2(os.path.join(sysconfig.get_config_var("LIBDIR"), soname), os.path.join(lib, soname))
    reused, missing = _reuse_bytecode(stdlib, os.path.join(lib, f"python{version}"))
    _smoke_test(dest, version)
    return reused, missing


def _reuse_bytecode(stdlib: str, copy: str) -> tuple[int, int]:
    """Gives every copied module the installation's own pyc, made hash-based and unchecked.

    Unchecked pycs (PEP 552) stay valid whatever mtime the archive gives the sources, so a
    read-only release never recompiles its standard library at boot. They are the
    installation's bytes with a new header, not a fresh compile: marshal's output depends on
    the compiling process's state, and a fresh compile would differ from build to build.
    Returns (reused, left to compile at boot).
    """
    reused = missing = 0
    for directory, _, files in os.walk(copy):
        for name in sorted(f for f in files if f.endswith(".py")):
            copied = os.path.join(directory, name)
            original = os.path.join(stdlib, os.path.relpath(copied, copy))
            with open(copied, "rb") as f:
                source = f.read()
            code = _installed_code(original, source)
            if code is None:
                missing += 1
                continue
            pyc = importlib.util.cache_from_source(copied)
            os.makedirs(os.path.dirname(pyc), exist_ok=True)
            with open(pyc, "wb") as out:
                out.write(importlib.util.MAGIC_NUMBER + _UNCHECKED_HASH.to_bytes(4, "little")
                        + importlib.util.source_hash(source) + code)
            reused += 1
    return reused, missing


def _installed_code(source_path: str, source: bytes) -> bytes | None:
    """The marshalled code of the installation's pyc for ``source_path``, if it is current."""
    try:
        with open(importlib.util.cache_from_source(source_path), "rb") as f:
            pyc = f.read()
    except OSError:
        return None
    if len(pyc) < 16 or pyc[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags = int.from_bytes(pyc[4:8], "little")
    if flags & 1:
        current = pyc[8:16] == importlib.util.source_hash(source)
    else:
        st = os.stat(source_path)
        current = (int.from_bytes(pyc[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                   and int.from_bytes(pyc[12:16], "little") == st.st_size & 0xFFFFFFFF)
    return pyc[16:] if current else None


def _smoke_test(dest: str, version: str) -> None:
    """Runs the copy from its new place, as bin/gossipy will, loading the system's libssl."""
    environ = dict(os.environ, LD_LIBRARY_PATH=os.path.join(dest, "lib"))
    ran = subprocess.run([os.path.join(dest, "bin", f"python{version}"), "-I", "-c", "import json, ssl"],
                         capture_output=True, text=True, env=environ)
    if ran.returncode != 0:
        tail = "\n  ".join((ran.stderr or ran.stdout).strip().splitlines()[-5:])
        raise BuildError(f"the copied Python does not start from its new place:\n  {tail}")
