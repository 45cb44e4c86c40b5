"""How the suite runs in parallel (``pytest -n N``, pytest-xdist).

Most tests wait on real processes and sockets (moto, the control plane, edges, ffmpeg,
Chromium), not on the CPU, so a few workers finish the suite in a fraction of the time
even on two cores. Work goes out a file at a time, so a module's fixtures (a moto
server, an edge, a stack) start once; ``tests/infra`` goes out whole, because its
session fixtures synthesize the CDK app once and share one asset cache (and
``tests/integration/edge_server`` goes out whole for its one package-scoped edge). The slowest
files are handed out first so that none of them starts last and runs alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings

# Directories whose files share session fixtures that must not run twice at once.
WHOLE_DIRECTORIES = ("tests/infra/", "tests/integration/edge_server/")

# Files that take the longest (``--durations`` of a full run), longest first.
SLOW_FIRST = (
    "tests/integration/test_workflows_large.py",
    "tests/e2e/test_streaming_folders.py",
    "tests/e2e/test_workflows_lifecycle.py",
    "tests/e2e/test_browser_folders.py",
    "tests/e2e/test_cli_folders.py",
    "tests/infra/",
    "tests/integration/test_bench_hits.py",
    "tests/integration/test_bench_hls.py",
    "tests/integration/test_bench_memory.py",
    "tests/integration/test_bench_misses.py",
    "tests/e2e/test_faults_origin.py",
    "tests/e2e/test_faults.py",
    "tests/integration/test_control_plane_prune.py",
    "tests/integration/test_control_plane_gc.py",
    "tests/integration/test_control_plane_replication_run.py",
)


def scope_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    for directory in WHOLE_DIRECTORIES:
        if path.startswith(directory):
            return directory
    return path


def rank_of(nodeid: str) -> int:
    path = nodeid.split("::", 1)[0]
    for rank, prefix in enumerate(SLOW_FIRST):
        if path.startswith(prefix):
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A stable sort: within a rank, files keep their collection order, and every worker
    # collects the same order (xdist checks that).
    items.sort(key=lambda item: rank_of(item.nodeid))


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which picks by --dist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    # Keep the order above (the default reorders scopes by their number of tests).
    config.option.loadscopereorder = False
    return FileScheduling(config, log)


# Hypothesis's per-example deadline is a timed assertion: on a shared, loaded machine
# it fails examples for being slow, not wrong. Examples are bounded by their count.
settings.register_profile("fsnode", deadline=None)
settings.load_profile("fsnode")
