"""Where the other parts of the repository live, for use as assets."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
STATE_MACHINES_DIR = FUNCTIONS_DIR / "statemachines"
CORE_LIBRARY_DIR = REPO_ROOT / "layers" / "fsnode_core"
TABLES_JSON = CORE_LIBRARY_DIR / "tables.json"
EDGE_DOCKERFILE = "edge_node/Dockerfile"
LAYER_REQUIREMENTS = Path(__file__).resolve().parent / "layer_requirements.txt"
# Build outputs reused between synths (gitignored).
CACHE_DIR = REPO_ROOT / ".cdk-cache"
