"""Releases carry the app vm.yml names: its source found in the project, packed into the PEX
with the pins of its own requirements.txt, and served from the unpacked release."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import yaml

from release import BuildError
from release.appsource import AppSource, check_pins_agree, find_app, source_files
from release.wheels import default_wheelhouse

from released import Release, build, unpack
from support.checkout import copy_repository

ROOM = "from server.channels import Channel\n\nclass Room(Channel):\n    pass\n\nROUTES = [('room:*', Room)]\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_module_file_a_package_or_a_dotted_path_under_a_folder(scratch: Path) -> None:
    root = tree(scratch, {"requirements.txt": "tornado==6.6.1\n", "single.py": ROOM, "pkg/__init__.py": ROOM,
                          "pkg/requirements.txt": "# the app's\nsix==1.17.0\n", "examples/notes/app.py": ROOM,
                          "examples/notes/requirements.txt": "idna==3.10\n", "server/chat.py": ROOM})
    # a top-level module has no package folder: the project's requirements.txt is gossipy's
    assert find_app(str(root), "single") == AppSource("single", "single.py")
    assert find_app(str(root), "pkg") == AppSource("pkg", "pkg", str(root / "pkg/requirements.txt"), ("six==1.17.0",))
    assert find_app(str(root), "examples.notes.app") == AppSource(
        "examples.notes.app", "examples", str(root / "examples/notes/requirements.txt"), ("idna==3.10",))
    assert find_app(str(root), "server.chat") == AppSource("server.chat")


def test_an_app_outside_the_project_or_with_loose_pins_stops_the_build(scratch: Path) -> None:
    root = tree(scratch, {"pkg/__init__.py": ROOM, "pkg/requirements.txt": "six>=1\n"})
    with pytest.raises(BuildError, match=r"^app other\.app \(vm\.yml, app\): neither other/app\.py nor a "
                                         r"package folder other/app/ in "):
        find_app(str(root), "other.app")
    with pytest.raises(BuildError, match=r"pkg/requirements\.txt, line 1: 'six>=1' is not pinned as name==version"):
        find_app(str(root), "pkg")


def test_the_app_and_gossipy_must_pin_a_shared_dependency_alike() -> None:
    app = AppSource("pkg", "pkg", "pkg/requirements.txt", ("pyyaml==6.0.2", "six==1.17.0"))
    check_pins_agree(app, ("PyYAML==6.0.2", "tornado==6.6.1"), "requirements.txt")
    with pytest.raises(BuildError, match=r"^pkg/requirements\.txt pins pyyaml==6\.0\.2, but requirements\.txt "
                                         r"pins PyYAML==6\.0\.3"):
        check_pins_agree(app, ("PyYAML==6.0.3",), "requirements.txt")


# Beside the app's code: a secret, a local vm.yml, tools' folders, bytecode and a scratch file.
CLUTTER = {"myapp/.env": "SECRET=1\n", "myapp/vm.yml": "node:\n  cookie: local\n", "myapp/node_modules/x/i.js": "",
           "myapp/_build/out": "", "myapp/__pycache__/m.cpython-311.pyc": "", "myapp/m.pyc": "",
           "myapp/notes.txt": "scratch\n"}


def test_an_app_packs_the_files_git_tracks_or_without_git_none_of_a_checkouts_clutter(scratch: Path) -> None:
    code = {"myapp/__init__.py": ROOM, "myapp/static/app.js": "", "solo.py": ROOM}
    plain = tree(scratch / "plain", {**code, **CLUTTER})
    assert source_files(str(plain), "myapp") == ["myapp/__init__.py", "myapp/notes.txt", "myapp/static/app.js"]
    assert source_files(str(plain), "solo.py") == ["solo.py"]
    checkout = tree(scratch / "checkout", {**code, **CLUTTER})
    subprocess.run(["git", "init", "-q"], cwd=checkout, check=True)
    subprocess.run(["git", "add", "myapp/__init__.py", "myapp/static/app.js"], cwd=checkout, check=True)
    assert source_files(str(checkout), "myapp") == ["myapp/__init__.py", "myapp/static/app.js"]
    with pytest.raises(BuildError, match=r"^solo\.py in .*: git tracks none of its files; git add"):
        source_files(str(checkout), "solo.py")


# ---- a real build of an app with a dependency of its own --------------------------------------

DEPENDENCY = "gossipy_test_dependency"


def write_wheel(folder: Path) -> str:
    """A minimal pure-Python wheel, made here so that the build needs no package index."""
    name = f"{DEPENDENCY}-1.0-py3-none-any.whl"
    info = f"{DEPENDENCY}-1.0.dist-info"
    files = {f"{DEPENDENCY}/__init__.py": "GREETING = 'hello from a wheel'\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DEPENDENCY}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: a test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(folder / name, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(text.encode())}")
        wheel.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return name


def test_a_release_carries_the_app_and_its_pinned_dependency(scratch: Path, make_node: Callable[..., Release],
                                                             system_python_path: str) -> None:
    project = copy_repository(scratch / "project")
    tree(project, {"myapp/__init__.py": f"from {DEPENDENCY} import GREETING\n" + ROOM,
                   "myapp/requirements.txt": f"# what myapp needs besides gossipy\n{DEPENDENCY}==1.0\n", **CLUTTER})
    doc = yaml.safe_load((project / "vm.yml").read_text())
    doc["app"] = "myapp"
    (project / "vm.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    wheelhouse = scratch / "wheelhouse"  # the usual cached wheels, and the app's
    shutil.copytree(default_wheelhouse(os.environ, "GOSSIPY_WHEELHOUSE"), wheelhouse)
    wheel = write_wheel(wheelhouse)

    done = build(project, "release", "--env=dev", env={"GOSSIPY_WHEELHOUSE": str(wheelhouse)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "app myapp (packing myapp)" in done.stdout and "(server + myapp + pinned wheels, offline)" in done.stdout
    release = project / "_build/dev/rel/gossipy/releases/0.0.1"
    contract = json.loads((release / "release.json").read_text())
    assert (contract["app"], contract["app_source"], contract["app_requirements"]) == (
        "myapp", "myapp", [f"{DEPENDENCY}==1.0"])
    with zipfile.ZipFile(release / "gossipy.pex") as pex:
        names = pex.namelist()
        assert f"{DEPENDENCY}==1.0" in json.loads(pex.read("PEX-INFO"))["requirements"]
    assert "myapp/__init__.py" in names and any(wheel in n for n in names)
    assert sorted(n for n in names if n.startswith("myapp/") and not n.endswith("/")) == \
        ["myapp/__init__.py", "myapp/notes.txt", "myapp/requirements.txt"]  # the copy has no .git

    root = unpack(release / "gossipy.tar.gz", scratch / "unpacked")
    shutil.rmtree(project)  # nothing of the project remains to import from
    # the system's python3.11, which has neither tornado nor the dependency: only the PEX does
    described = make_node(root, system_python_path).run("describe")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["app"] == "myapp"
