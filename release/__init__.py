"""Distillery-style releases of gossipy: ``python build.py release.init | release | release.clean``.

cli (arguments and messages) -> builder (the steps) -> project (what the tree says), wheels
(the cached pinned wheels), pexfile (the PEX), runtime (the bundled Python), archive (the
reproducible tarball); contract is the build/run record written into the release, and
scaffold writes vm.yml. Nothing here runs inside a release except the rendered templates.
"""


class BuildError(Exception):
    """The build cannot go on; the message says why and what to do."""
