"""gossipy's release tool, like Distillery's mix tasks; see release/cli.py or run with --help.

    python build.py release.init [--force]
    python build.py release --env=prod
    python build.py release.clean [--env=ENV | --all]
"""

import os
import sys

from release.cli import main

if __name__ == "__main__":
    sys.exit(main(root=os.path.dirname(os.path.abspath(__file__))))
