"""``python -m edge_node``: run one edge node configured from the environment."""

from __future__ import annotations

import sys

from edge_node.main import main

if __name__ == "__main__":
    sys.exit(main())
