"""Control plane: ``plan download`` for a 10 GiB file (2,560 chunks of 4 MiB).

The Chalice app runs in this process (``chalice.test.Client``) against a moto server
whose chunks table holds the file's metadata and two replica items per chunk (three
live nodes); its chunk hashes are in its version manifest in S3. DynamoDB requests are
counted with botocore's ``before-send.dynamodb`` event on the app's client; handler
time is wall time around the in-process call.

The reference is the least a plan must read: the file's partition with one
paginated Query (``ChunkCatalog.file_view``), counted and timed the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    BenchConfig,
    Unavailable,
    deadline,
    percentile,
    standalone,
)
from bench.results import Goal, Row

NAMES = ("plan_10gib_ddb_requests",)
# The issue asks for the figures and sets no goal.
GOALS: dict[str, Goal | None] = {"plan_10gib_ddb_requests": None}
FUNCTIONS_DIR = REPO_ROOT / "functions"
CHUNK = 4 * 1024 * 1024
NODES = 3
REPLICAS = 2


class Counter:
    """Counts DynamoDB requests as botocore sends them (retries included), and the
    time spent inside DynamoDB calls (sending, moto's work, parsing the answer)."""

    def __init__(self) -> None:
        self.count = 0
        self.operations: dict[str, int] = {}
        self.call_seconds = 0.0
        self._started: float | None = None

    def __call__(self, request: Any = None, **kwargs: Any) -> None:
        self.count += 1
        name = str(kwargs.get("event_name", "")).rsplit(".", 1)[-1]
        self.operations[name] = self.operations.get(name, 0) + 1

    def _call_starts(self, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def _call_ends(self, **kwargs: Any) -> None:
        if self._started is not None:
            self.call_seconds += time.perf_counter() - self._started
            self._started = None

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.dynamodb", self)
        # before-call/after-call bracket one API call, its retries included.
        client.meta.events.register("before-call.dynamodb", self._call_starts)
        client.meta.events.register("after-call.dynamodb", self._call_ends)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set the control plane's environment for the in-process app, then restore ours."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def find_plan_route(app: Any) -> tuple[str, str] | None:
    """``(method, path)`` of the app's plan-download route, if it has one."""
    for path, methods in app.routes.items():
        if "plan" in path and "{file_id}" in path:
            for method in ("GET", "POST"):
                if method in methods:
                    return method, path
    return None


def _fill(client: Any, chunks_table: str, nodes_table: str, file_id: str, chunks: int) -> None:
    import boto3
    from fsnode_core.digests import chunks_digest
    from fsnode_core.models import FileRecord, NodeRecord, PathClaim
    from fsnode_core.published import Origin, VersionManifest
    from fsnode_core.published_keys import version_manifest_key
    from fsnode_core.replica_blocks import ReplicaBlock, block_of

    now = int(time.time())
    version = "c" * 32
    size = chunks * CHUNK
    nodes = [
        NodeRecord(
            node_id=f"{i:032x}",
            endpoint=f"https://127.0.0.{i + 1}:8443",
            region="local",
            capacity_bytes=1 << 40,
            credential_sha256="0" * 64,
            last_heartbeat=now,
            registered_at=now,
            expires_at=now + 86400,
        )
        for i in range(NODES)
    ]
    for node in nodes:
        client.put_item(TableName=nodes_table, Item=node.to_item())
    digests = "".join(f"{index:064x}" for index in range(chunks))
    meta = FileRecord(
        file_id=file_id,
        version=version,
        path="bench/ten-gib.bin",
        size=size,
        content_type="application/octet-stream",
        etag="e" * 32,
        last_modified=now,
        chunk_size=CHUNK,
        bucket="fsnode-origin",
        key=f"files/{file_id}/{version}",
        created_at=now,
        chunks_sha256=chunks_digest(digests),
        seq=1,
        published_seq=1,
    )
    manifest = VersionManifest(
        file_id=file_id,
        version=version,
        path=meta.path,
        size=size,
        chunk_size=CHUNK,
        content_type=meta.content_type,
        etag=meta.etag,
        last_modified=now,
        source="upload",
        origin=Origin(meta.bucket, meta.key),
        chunk_sha256=digests,
        chunks_sha256=meta.chunks_sha256,
    )
    boto3.client("s3").put_object(
        Bucket=meta.bucket, Key=version_manifest_key(file_id, version), Body=manifest.to_json()
    )
    items = [meta.to_item(), PathClaim(meta.path, file_id, now).to_item()]
    blocks: dict[tuple[str, int], ReplicaBlock] = {}
    for index in range(chunks):
        for r in range(REPLICAS):
            node = nodes[(index + r) % NODES]
            blocks.setdefault(
                (node.node_id, block_of(index)),
                ReplicaBlock(
                    file_id,
                    version,
                    node.node_id,
                    block_of(index),
                    created_at=now,
                ),
            ).chunks.add(index)
    items.extend(block.to_item() for block in blocks.values())
    for start in range(0, len(items), 25):  # BatchWriteItem takes 25 at a time
        pending: Any = {
            chunks_table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        }
        for _ in range(10):  # bounded: moto answers everything at once in practice
            answer = client.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                break
        if pending:
            raise RuntimeError("DynamoDB kept items unprocessed while filling the catalog")


def run(config: BenchConfig, wanted: set[str]) -> list[Row]:
    try:
        from chalice.test import Client

        from fsnode.localstack.aws_process import aws_server_process
        from fsnode.localstack.resources import ResourceBuilder, control_plane_settings
        from fsnode.localstack.stack import aws_env
    except ImportError as exc:
        raise Unavailable(f"cannot import the control plane's pieces: {exc}") from exc
    if not (FUNCTIONS_DIR / "app.py").exists():
        raise Unavailable("functions/app.py does not exist")
    # moto answers a Query of the file's ~7,700 items in seconds, so the quick run
    # plans a quarter of the file; the note says which size was measured.
    chunks = config.pick_int(2560, 640, 64)
    iterations = config.pick_int(15, 3, 2)
    budget = config.pick(60, 8, 5)  # seconds of plans; the run stops early past it
    region = "us-east-1"
    log = Path(config.workdir) / "plan" / "aws.log"
    with aws_server_process(log, region) as endpoint:
        base = aws_env(endpoint, region)
        settings = {
            "FSNODE_PUBLIC_URL": "http://127.0.0.1:9",
            "FSNODE_CHUNK_SIZE": str(CHUNK),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "fsnode",
            "POWERTOOLS_METRICS_NAMESPACE": "fsnode",
        }
        with _environment(base):
            resources = ResourceBuilder(endpoint, region, FUNCTIONS_DIR).build(settings)
        env = {**base, **settings, **control_plane_settings(resources)}
        env.pop("FSNODE_REPLICATE_STATE_MACHINE_ARN", None)
        with _environment(env):
            return _measure(Client, env, resources.api_key, chunks, iterations, budget)


def _measure(
    client_class: Any,
    env: dict[str, str],
    api_key: str,
    chunks: int,
    iterations: int,
    budget: float,
) -> list[Row]:
    from fsnode.localstack.app_loader import load_functions_app

    module = load_functions_app(FUNCTIONS_DIR)
    from chalicelib import aws  # importable once the app is loaded (functions/ on sys.path)

    aws.reset()  # clients and settings from this environment, not an earlier one
    try:
        return _measure_app(module, aws, client_class, env, api_key, chunks, iterations, budget)
    finally:
        aws.reset()  # leave no client pointing at this run's (stopped) moto server


def _measure_app(
    module: Any,
    aws: Any,
    client_class: Any,
    env: dict[str, str],
    api_key: str,
    chunks: int,
    iterations: int,
    budget: float,
) -> list[Row]:
    found = find_plan_route(module.app)
    if found is None:
        raise Unavailable(
            "functions/app.py has no plan-download route yet "
            f"(routes: {', '.join(sorted(module.app.routes))})"
        )
    method, pattern = found
    from fsnode_core.catalog import ChunkCatalog

    ddb = aws.client("dynamodb")
    file_id = "b" * 32
    _fill(ddb, env["FSNODE_CHUNKS_TABLE"], env["FSNODE_NODES_TABLE"], file_id, chunks)
    counter = Counter()
    counter.attach(ddb)
    path = pattern.replace("{file_id}", file_id)
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    body = b"{}" if method == "POST" else b""
    times: list[float] = []
    own: list[float] = []  # handler time outside DynamoDB calls
    counts: list[int] = []
    with client_class(module.app) as test_client, deadline(budget) as expired:
        for i in range(iterations + 1):  # the first call warms caches and is not counted
            if len(times) >= 2 and expired():
                break  # bounded in time too: moto answers a 10 GiB plan in seconds
            before, inside = counter.count, counter.call_seconds
            started = time.perf_counter()
            answer = test_client.http.request(method, path, headers=headers, body=body)
            elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(
                    f"{method} {pattern} answered {answer.status_code}: {answer.body[:300]!r}"
                )
            if i == 0:
                counter.operations.clear()
            else:
                times.append(elapsed)
                own.append(elapsed - (counter.call_seconds - inside))
                counts.append(counter.count - before)
    plan = json.loads(answer.body)

    # The reference: one paginated Query of the file's partition, on its own client.
    import boto3

    ref_client = boto3.client("dynamodb")
    ref_counter = Counter()
    ref_counter.attach(ref_client)
    catalog = ChunkCatalog(env["FSNODE_CHUNKS_TABLE"], ref_client)
    ref_times: list[float] = []
    ref_counts: list[int] = []
    with deadline(budget / 2) as expired:
        for _ in range(len(times)):
            if len(ref_times) >= 2 and expired():
                break
            before = ref_counter.count
            started = time.perf_counter()
            catalog.file_view(file_id)
            ref_times.append(time.perf_counter() - started)
            ref_counts.append(ref_counter.count - before)

    requests = statistics.mean(counts)
    ref_requests = statistics.mean(ref_counts)
    ops = ", ".join(f"{k} {v / len(counts):g}" for k, v in sorted(counter.operations.items()))
    listed = len(plan.get("chunks", [])) if isinstance(plan, dict) else 0
    shape = (
        f"{chunks} chunks of 4 MiB ({chunks * CHUNK / 1024**3:g} GiB), {REPLICAS} "
        f"replicas each, {NODES} nodes"
    )
    timing = (
        f"in-process handler time over {len(times)} calls (reference: the Query, "
        f"{len(ref_times)} calls); the handler's own time outside DynamoDB calls "
        f"p50 {percentile(own, 0.5) * 1000:.0f} ms, p99 {percentile(own, 0.99) * 1000:.0f}"
        f" ms; the rest is moto answering (its response serializer, mostly)"
    )
    return [
        Row(
            name="plan_10gib_ddb_requests",
            value=requests,
            reference=ref_requests,
            goal=None,
            unit="DynamoDB requests per plan",
            note=(
                f"reference=one paginated Query of the file; per plan: {ops}; "
                f"{method} {pattern}; plan lists {listed} chunks; {shape}"
            ),
        ),
        Row(
            name="plan_10gib_p50_ms",
            value=percentile(times, 0.5) * 1000,
            reference=percentile(ref_times, 0.5) * 1000,
            goal=None,
            unit="ms",
            note=timing,
        ),
        Row(
            name="plan_10gib_p99_ms",
            value=percentile(times, 0.99) * 1000,
            reference=percentile(ref_times, 0.99) * 1000,
            goal=None,
            unit="ms",
            note=timing,
        ),
    ]


def main() -> int:
    return standalone(NAMES, GOALS, run, "control plane: plan download for a 10 GiB file")


if __name__ == "__main__":
    raise SystemExit(main())
