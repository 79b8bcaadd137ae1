"""The build/run contract: what one release was built as, written into it as ``release.json``.

The builder fills a ``Release`` once and renders everything else from it (``bin/gossipy`` and
the JSON), so the boot script and the JSON never disagree. The environment variables that
change a build or a running release are constants here, in one place.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from server import settings

ENTRY_POINT = "server.__main__:main"


@dataclass(frozen=True)
class Release:
    # Build time: where the cached wheels live, and the timestamp every archive entry gets.
    ENV_WHEELHOUSE = "GOSSIPY_WHEELHOUSE"
    ENV_SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
    # Run time: bin/gossipy's writable folder (pid, log, PEX_ROOT); the node sees it too.
    ENV_TMP = settings.ENV_TMP

    name: str
    version: str
    environment: str
    include_python: bool
    # "3.11": what the PEX's wheels were built for, so what the target's python3 must be.
    python_version: str
    # The bundled runtime's folder in the release ("python-3.11.7"), or None.
    python_dir: str | None
    # "Debian GNU/Linux 12 (bookworm), x86_64, glibc 2.36": where a bundled runtime can run.
    built_on: str
    requirements: tuple[str, ...]
    source_date_epoch: int
    # The app the node serves (vm.yml's app), what of the project was packed for it beside
    # server/ ("examples", "myapp.py"; None: the app is part of gossipy), and its own pins.
    app: str = settings.DEFAULT_APP
    app_source: str | None = None
    app_requirements: tuple[str, ...] = ()
    # Where pid, log and PEX_ROOT go unless RELEASE_TMP says otherwise; None: $TMPDIR/<name>.
    tmp_dir: str | None = None
    entry_point: str = ENTRY_POINT

    @property
    def release_dir(self) -> str:
        return f"releases/{self.version}"

    @property
    def pex(self) -> str:
        return f"{self.release_dir}/{self.name}.pex"

    @property
    def settings(self) -> str:
        return f"{self.release_dir}/vm.yml"

    @property
    def contract(self) -> str:
        return f"{self.release_dir}/release.json"

    @property
    def tarball(self) -> str:
        return f"{self.release_dir}/{self.name}.tar.gz"

    @property
    def image_tarball(self) -> str:
        """The tarball's copy at a path without the version: what the Dockerfile adds, so that a
        version bump in pyproject.toml needs no change there."""
        return f"{self.name}.tar.gz"

    def to_json(self) -> str:
        data: dict[str, Any] = dataclasses.asdict(self)
        data["requirements"] = list(self.requirements)
        data["app_requirements"] = list(self.app_requirements)
        data.update(pex=self.pex, settings=self.settings)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def script_values(self) -> dict[str, str]:
        """The placeholders of the bin/gossipy template."""
        return {
            "REL_NAME": self.name,
            "REL_VSN": self.version,
            "REL_ENV": self.environment,
            "PYTHON_DIR": self.python_dir or "",
            "PYTHON_VERSION": self.python_version,
            "BUILT_ON": self.built_on,
            "DEFAULT_TMP": self.tmp_dir or "",
        }
