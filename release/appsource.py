"""The app a release carries: where the module vm.yml names is in the project, and its pins.

``app: a.b.c`` is found as Python finds it from the project folder (what ``python -m server``
does there): ``a/b/c.py`` or the package folder ``a/b/c/``. The release packs the top-level
``a/`` (or ``a.py``) whole: Python imports ``a`` and ``a.b`` before ``a.b.c``, and an app may
import its siblings. The app's own dependencies are the pins of a ``requirements.txt`` in its
package folder (``a/b/`` for ``a/b/c.py``, ``a/b/c/`` for a package), resolved into the PEX
like the server's. An app inside gossipy (``server.chat``) is packed with the server already.

Packed are the files of that top level a checkout means to ship (:func:`source_files`): in a
git checkout, those git tracks; elsewhere, all but what a checkout accumulates beside code
(dotfiles such as ``.env``, a local ``vm.yml``, ``node_modules``, builds and bytecode), so no
local secret or scratch file goes into the release.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from dataclasses import dataclass

from . import BuildError
from .project import read_pins

REQUIREMENTS = "requirements.txt"
# gossipy's own package, always in the PEX.
SERVER_PACKAGE = "server"
# Without git: what is never packed besides dotfiles (secrets, tools' folders, builds, bytecode).
UNPACKED = ("vm.yml", "node_modules", "_build", "__pycache__", "*.pyc", "*.pyo")


@dataclass(frozen=True)
class AppSource:
    module: str
    # What to pack beside server/, relative to the project: "examples" or "myapp.py"; None when
    # the app is part of gossipy.
    top_level: str | None = None
    # The app's requirements.txt (absolute), if its package folder has one, and its pins.
    requirements_file: str | None = None
    requirements: tuple[str, ...] = ()


def find_app(root: str, module: str) -> AppSource:
    """Where ``module`` is under ``root``; BuildError naming the paths looked at if nowhere."""
    parts = module.split(".")
    path = os.path.join(root, *parts)
    if os.path.isfile(path + ".py"):
        package_dir = os.path.dirname(path)
    elif os.path.isdir(path):
        package_dir = path
    else:
        shown = os.path.relpath(path, root)
        raise BuildError(f"app {module} (vm.yml, app): neither {shown}.py nor a package folder {shown}/ "
                         f"in {root}; the app's source must be in the project to go into the release")
    if parts[0] == SERVER_PACKAGE:
        return AppSource(module)
    top_level = parts[0] if len(parts) > 1 or package_dir == path else parts[0] + ".py"
    # A top-level module file (myapp.py) has no package folder: the project's own
    # requirements.txt there is gossipy's, not the app's.
    requirements_file = os.path.join(package_dir, REQUIREMENTS)
    if os.path.abspath(package_dir) == os.path.abspath(root) or not os.path.isfile(requirements_file):
        return AppSource(module, top_level)
    return AppSource(module, top_level, requirements_file, read_pins(requirements_file))


def check_pins_agree(app: AppSource, server_pins: tuple[str, ...], server_file: str) -> None:
    """A distribution pinned by both the app and gossipy must be pinned to one version: the
    PEX holds one copy of it."""
    server = {_canonical(pin): pin for pin in server_pins}
    for pin in app.requirements:
        theirs = server.get(_canonical(pin))
        if theirs is not None and theirs.split("==")[1] != pin.split("==")[1]:
            raise BuildError(f"{app.requirements_file} pins {pin}, but {server_file} pins {theirs}; "
                             f"a release holds one version of each, so pin the same one")


def _canonical(pin: str) -> str:
    """A pin's distribution name as PyPI compares them (PEP 503): PyYAML, pyyaml, py_yaml."""
    return re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower()


def source_files(root: str, top_level: str) -> list[str]:
    """The files under ``top_level`` (a folder or a module file in ``root``) that go into the
    PEX, relative to ``root`` and sorted (so a rebuild packs the same): the ones git tracks when
    ``root`` is a git checkout, else every file but dotfiles and ``UNPACKED``."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", top_level], cwd=root, check=True,
                                stdin=subprocess.DEVNULL, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        return _plain_files(root, top_level)
    # What is deleted in the working tree is still listed (the index has it).
    files = sorted(name for name in os.fsdecode(listed).split("\0")
                   if name and os.path.isfile(os.path.join(root, name)))
    if not files:
        raise BuildError(f"{top_level} in {root}: git tracks none of its files; git add what the "
                         f"release should carry")
    return files


def _plain_files(root: str, top_level: str) -> list[str]:
    path = os.path.join(root, top_level)
    if os.path.isfile(path):
        return [top_level]
    files = []
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = [name for name in subfolders if _packed(name)]
        files += [os.path.relpath(os.path.join(folder, name), root) for name in names if _packed(name)]
    return sorted(files)


def _packed(name: str) -> bool:
    return not name.startswith(".") and not any(fnmatch.fnmatch(name, pattern) for pattern in UNPACKED)
