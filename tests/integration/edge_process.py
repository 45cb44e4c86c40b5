"""The real edge app in a process of its own, for tests that measure the process (RSS
from /proc): a moto S3 server, one cached file, the app on its TLS and plain listeners.

Run as ``python edge_process.py SIZE CHUNK SEND_TIMEOUT``; it prints one JSON line
(``pid``, ``port``, ``http_port``, ``target``, ``ca_file``) once it serves, and stops
when its stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import boto3
import requests

from edge_node.cache import CacheConfig
from edge_node.limits import ClientLimits
from tests.integration.edge_fixtures import EdgeServer, ThrowawayCA, moto_s3
from tests.integration.edge_publishing import put_file, share_query

BUCKET = "fsnode-edge-process"


def main() -> int:
    size, chunk, send_timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    with moto_s3(), tempfile.TemporaryDirectory() as state:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        edge = EdgeServer(
            Path(state),
            ThrowawayCA(),
            BUCKET,
            cache_config=CacheConfig(max_bytes=4 * size),
            client_limits=ClientLimits(send_timeout=send_timeout),
        )
        edge.start()
        try:
            manifest = put_file(BUCKET, os.urandom(size), chunk)
            target = f"/f/{manifest.file_id}?{urlencode(share_query(manifest.file_id, None))}"
            with requests.Session() as session:
                session.trust_env = False
                for _ in range(2):  # a fill, then a hit from the disk cache
                    answer = session.get(edge.url + target, verify=str(edge.ca_file))
                    assert answer.status_code == 200 and len(answer.content) == size
            print(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "port": edge.port,
                        "http_port": edge.http_port,
                        "target": target,
                        "ca_file": str(edge.ca_file),
                    }
                ),
                flush=True,
            )
            sys.stdin.read()  # until the test closes our stdin
        finally:
            edge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
