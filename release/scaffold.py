"""``release.init``: a commented vm.yml with a fresh cookie per environment."""

from __future__ import annotations

import os
import secrets
import string

from . import BuildError
from .project import Project

TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "vm.yml")
COOKIE_LENGTH = 64
# Letters and digits only: the cookie goes into YAML, shell variables and docker files unquoted.
_COOKIE_ALPHABET = string.ascii_letters + string.digits


def new_cookie() -> str:
    return "".join(secrets.choice(_COOKIE_ALPHABET) for _ in range(COOKIE_LENGTH))


def write_vm_yml(project: Project, force: bool) -> str:
    """Writes ``vm.yml``; an existing one is only replaced with ``force``. Returns its path."""
    path = project.vm_yml
    if os.path.exists(path) and not force:
        raise BuildError(f"{path} already exists; release.init --force replaces it "
                         f"(with new cookies: every node must then get the new release)")
    with open(TEMPLATE, encoding="utf-8") as f:
        template = string.Template(f.read())
    text = template.substitute(name=project.name, dev_cookie=new_cookie(), prod_cookie=new_cookie())
    # Readable by the owner only: it holds the cluster's cookies.
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path
