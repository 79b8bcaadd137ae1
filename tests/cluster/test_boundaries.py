"""What the cluster may import of gossipy (ARCHITECTURE.md), read from its source."""

from __future__ import annotations

import ast

from support import ROOT


def test_the_cluster_imports_of_gossipy_only_the_leaves_it_is_allowed() -> None:
    """The cluster is a carrier: what a valid published message is (the backend's rules in
    server/publishing) is injected by server/app, never imported; nor are channels or presence."""
    allowed = {"nodename", "settings", "pubsub", "strictjson", "throttle"}
    imported: dict[str, set[str]] = {}
    for path in sorted((ROOT / "server" / "cluster").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2:  # from .. import X, from ..X import
                names = [node.module] if node.module else [alias.name for alias in node.names]
                imported.setdefault(path.name, set()).update(name.split(".")[0] for name in names)
    assert {name: modules - allowed for name, modules in imported.items() if modules - allowed} == {}
