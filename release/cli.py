"""``python build.py COMMAND``: the arguments, and every error turned into one clear message."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from server import settings

from . import BuildError, builder, scaffold
from .project import read_project

USAGE = """\
python build.py release.init [--force]          write vm.yml (fresh cookies; --force replaces one)
python build.py release [--env=ENV] [--config=FILE]
                                                build _build/ENV/rel/<name>/ and its tarball
python build.py release.clean [--env=ENV|--all] remove the built release of ENV (or of every env)
ENV defaults to vm.yml's release.default_environment."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="build.py", usage=USAGE,
                                     description="Distillery-style releases of gossipy.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", prog="python build.py")
    init = commands.add_parser("release.init", help="write a commented vm.yml")
    init.add_argument("--force", action="store_true", help="replace an existing vm.yml")
    release = commands.add_parser("release", help="build a release")
    release.add_argument("--env", help="the vm.yml environment to build")
    release.add_argument("--config", help="the settings file to build from (default: the project's vm.yml)")
    clean = commands.add_parser("release.clean", help="remove built releases")
    which = clean.add_mutually_exclusive_group()
    which.add_argument("--env", help="the environment whose release to remove")
    which.add_argument("--all", action="store_true", help="remove the releases of every environment")
    return parser


def _say(message: str) -> None:
    print(message, flush=True)


def run(argv: list[str], root: str) -> int:
    args = _parser().parse_args(argv)
    project = read_project(root)
    if getattr(args, "config", None):
        project = dataclasses.replace(project, config=os.path.abspath(args.config))
    if args.command == "release.init":
        path = scaffold.write_vm_yml(project, args.force)
        _say(f"wrote {os.path.relpath(path, root)}: environments dev (include_python: false) and "
             f"prod (include_python: true), each with a fresh {scaffold.COOKIE_LENGTH}-character cookie")
        _say("next: python build.py release --env=prod")
        return 0
    if args.command == "release.clean" and (args.all or args.env):
        # Cleaning must work even while vm.yml is broken.
        envs = builder.built_environments(project) if args.all else [args.env]
        if not envs:
            _say("nothing to remove: no release has been built")
        builder.clean(project, envs, _say)
        return 0
    if not os.path.exists(project.vm_yml):
        raise BuildError(f"{project.vm_yml} does not exist; write one with: python build.py release.init")
    if args.command == "release":
        builder.build(project, args.env, _say, os.environ)
    else:
        builder.clean(project, [builder.choose_environment(settings.read_document(project.vm_yml), None)], _say)
    return 0


def main(argv: list[str] | None = None, root: str | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv, root or os.getcwd())
    except settings.SettingsError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build.py: interrupted", file=sys.stderr)
        return 130
