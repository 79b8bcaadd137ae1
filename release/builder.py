"""``release``: the steps that turn the tree and one vm.yml environment into a release.

    _build/<env>/rel/<name>/
        bin/<name>                       the boot script (templates/gossipy.sh)
        python-X.Y.Z/                    the bundled runtime (include_python: true)
        releases/<version>/<name>.pex    the server, the app (vm.yml's app) and their pinned wheels
        releases/<version>/vm.yml        the environment's settings, ${VAR}s unsubstituted
        releases/<version>/release.json  the build/run contract
        releases/<version>/<name>.tar.gz all of the above, reproducibly
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from typing import Any, Callable, Mapping

import yaml

from server import settings

from . import BuildError, archive, pexfile, runtime, wheels
from .appsource import SERVER_PACKAGE, check_pins_agree, find_app, source_files
from .contract import ENTRY_POINT, Release
from .project import Project, check_python, read_pins, source_date_epoch

SCRIPT_TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "gossipy.sh")
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")

Say = Callable[[str], None]


def release_root(project: Project, env: str, name: str) -> str:
    return os.path.join(project.build_dir(env), "rel", name)


def choose_environment(doc: settings.Document, env: str | None) -> str:
    settings.validate(doc)
    env = env or (doc.data.get("release") or {}).get("default_environment")
    if not env:
        raise BuildError(f"{doc.path}: no --env given and no release.default_environment; "
                         f"environments: {', '.join(settings.environment_names(doc)) or 'none'}")
    return env


def build(project: Project, env: str | None, say: Say, environ: Mapping[str, str]) -> Release:
    """Builds the release of ``env`` (vm.yml's default environment if None) from scratch."""
    started = time.monotonic()
    step = _Steps(say)

    step(f"reading {os.path.relpath(project.vm_yml, project.root)} and pyproject.toml")
    doc = settings.read_document(project.vm_yml)
    env = choose_environment(doc, env)
    options = settings.build_options(doc, env)
    embedded = settings.flatten(doc, env)
    release_section = embedded["release"]
    name = release_section.get("name", project.name)
    _check_version(doc, project)
    tmp_dir = release_section.get("tmp_dir")
    if tmp_dir and "${" in tmp_dir:
        raise doc.fail(("release", "tmp_dir"), "bin/gossipy reads it before Python starts, so it "
                       "cannot hold ${VAR}; give a plain path, or set RELEASE_TMP at boot")
    python_version = check_python(project)
    server_dir = os.path.join(project.root, "server")
    if not os.path.isfile(os.path.join(server_dir, "__main__.py")):
        raise BuildError(f"{server_dir}/__main__.py is missing: the PEX's entry point is {ENTRY_POINT}")
    # The app vm.yml names, not GOSSIPY_APP: a release is what the tree says, rebuilt alike.
    app = find_app(project.root, embedded.get("app", settings.DEFAULT_APP))
    pins = read_pins(project.requirements_file)
    check_pins_agree(app, pins, project.requirements_file)
    epoch, epoch_source = source_date_epoch(project, environ, Release.ENV_SOURCE_DATE_EPOCH)
    include_python = bool(options["include_python"])
    contract = Release(
        name=name, version=project.version, environment=env, include_python=include_python,
        python_version=python_version,
        python_dir=runtime.runtime_dir_name() if include_python else None,
        built_on=runtime.build_platform(), requirements=pins,
        source_date_epoch=epoch, tmp_dir=tmp_dir,
        app=app.module, app_source=app.top_level, app_requirements=app.requirements)
    say(f"    {name} {project.version}, environment {env}, include_python: "
        f"{str(include_python).lower()}, Python {python_version}, timestamps from {epoch_source}")
    say(f"    app {app.module}" + (f" (packing {app.top_level})" if app.top_level else " (part of gossipy)"))

    root = release_root(project, env, name)
    shutil.rmtree(root, ignore_errors=True)
    release_dir = os.path.join(root, contract.release_dir)
    os.makedirs(release_dir)

    wheelhouse = wheels.default_wheelhouse(environ, Release.ENV_WHEELHOUSE)
    requirements_files = [project.requirements_file, *filter(None, [app.requirements_file])]
    step(f"caching the pinned wheels ({', '.join(contract.requirements + contract.app_requirements)})")
    wheels.ensure_wheels(requirements_files, wheelhouse, say=lambda m: say(f"    {m}"))

    packed = f"server + {app.top_level}" if app.top_level else "server"
    step(f"building the PEX {contract.pex} ({packed} + pinned wheels, offline)")
    with tempfile.TemporaryDirectory(prefix="gossipy-pex-src-") as source_dir:
        for top_level in (SERVER_PACKAGE, *filter(None, [app.top_level])):
            _copy_source(project.root, top_level, source_dir)
        pexfile.build_pex(source_dir, requirements_files, wheelhouse, contract.entry_point,
                          os.path.join(root, contract.pex))

    if contract.python_dir:
        step(f"bundling this machine's Python into {contract.python_dir}/ ({contract.built_on})")
        reused, missing = runtime.bundle_python(os.path.join(root, contract.python_dir))
        say(f"    standard library: {reused} modules with bytecode"
            + (f", {missing} without (compiled at boot)" if missing else ""))
    else:
        say(f"    include_python: false: the target's python{python_version} runs it")

    step(f"embedding the {env} settings in {contract.settings}")
    embedded["release"] = {**release_section, "name": name, "version": project.version}
    # The settings hold the cookie: readable by the release's owner only.
    _write(os.path.join(root, contract.settings), _settings_text(embedded, env), 0o600)
    _write(os.path.join(root, contract.contract), contract.to_json(), 0o644)

    step(f"writing bin/{name}")
    _write(os.path.join(root, "bin", name), render_script(contract), 0o755)

    step(f"packing {contract.tarball}")
    tarball = os.path.join(root, contract.tarball)
    entries = archive.write_tarball(root, tarball, epoch, private=frozenset({contract.settings}))
    # After packing, so the tarball does not hold its copy; the rmtree above removes an old one.
    image_tarball = os.path.join(root, contract.image_tarball)
    shutil.copyfile(tarball, image_tarball)
    size = os.path.getsize(tarball) / 1e6
    say(f"    {entries} entries, {size:.1f} MB")
    step.finish()

    say(f"==> built {name} {project.version} ({env}) in {time.monotonic() - started:.1f} s")
    say(f"    release: {os.path.relpath(root, project.root)}/")
    say(f"    tarball: {os.path.relpath(tarball, project.root)}")
    say(f"    for the Dockerfile, the same bytes at: {os.path.relpath(image_tarball, project.root)}")
    say(f"    run it:  tar -xzf {name}.tar.gz -C DIR && DIR/bin/{name} foreground")
    say(f"    it writes its pid, log and unpacked code under ${Release.ENV_TMP} "
        f"(default: {tmp_dir or '${TMPDIR:-/tmp}/' + name})")
    return contract


class _Steps:
    """Numbers and times the steps, so the output shows where a build spends its time."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.count = 0
        self.since = time.monotonic()

    def __call__(self, title: str) -> None:
        if self.count:
            self.finish()
        self.count += 1
        self.since = time.monotonic()
        self.say(f"==> {title}")

    def finish(self) -> None:
        self.say(f"    ({time.monotonic() - self.since:.1f} s)")


def _check_version(doc: settings.Document, project: Project) -> None:
    version = (doc.data.get("release") or {}).get("version")
    if version is not None and version != project.version:
        raise doc.fail(("release", "version"), f"says {version!r} but pyproject.toml says "
                       f"{project.version!r}; the version comes from pyproject.toml, remove it here")


def _settings_text(embedded: dict[str, Any], env: str) -> str:
    header = (f"# The {env} environment of vm.yml, merged over its run-time sections when this\n"
              f"# release was built. ${{VAR}} references are filled in at boot, and RELEASE_COOKIE,\n"
              f"# RELEASE_NODE, RELEASE_DISTRIBUTION, RELEASE_SYNC_NODES and PORT override it.\n")
    return header + yaml.safe_dump(embedded, sort_keys=False, default_flow_style=False)


def render_script(contract: Release) -> str:
    """bin/gossipy: the template with every @NAME@ replaced by a single-quoted sh literal."""
    values = contract.script_values()
    with open(SCRIPT_TEMPLATE, encoding="utf-8") as f:
        template = f.read()

    def literal(match: re.Match[str]) -> str:
        return "'" + values[match.group(1)].replace("'", "'\\''") + "'"

    return _PLACEHOLDER.sub(literal, template)


def _copy_source(root: str, top_level: str, dest: str) -> None:
    """Copies the files of ``top_level`` a release carries (appsource.source_files) into ``dest``."""
    for name in source_files(root, top_level):
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(root, name), target)


def _write(path: str, text: str, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def clean(project: Project, envs: list[str], say: Say) -> None:
    """Removes what ``release`` built for each env; the wheelhouse stays."""
    for env in envs:
        rel = os.path.join(project.build_dir(env), "rel")
        if os.path.isdir(rel):
            shutil.rmtree(rel)
            say(f"removed {os.path.relpath(rel, project.root)}/")
        else:
            say(f"nothing to remove for {env} ({os.path.relpath(rel, project.root)}/ does not exist)")
        for empty in (project.build_dir(env), project.build_dir()):
            if os.path.isdir(empty) and not os.listdir(empty):
                os.rmdir(empty)


def built_environments(project: Project) -> list[str]:
    top = project.build_dir()
    if not os.path.isdir(top):
        return []
    return sorted(e for e in os.listdir(top) if os.path.isdir(os.path.join(top, e, "rel")))
