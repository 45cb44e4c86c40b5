"""The local stack's stand-in for AWS: moto's server with in-process Lambda dispatch
(each function signing as its own role), IAM enforced as AWS does it
(``iam_enforcement``, once the stack turns it on), ranged S3 GETs that read only the
bytes asked for (``s3_ranges``), multipart part checksums checked and kept as S3 does
(``s3_checksums``), conditional writes that hold when writers of one key race
(``s3_conditional_writes``), Step Functions' size and history limits
(``states_limits``), and a request dispatch that looks each backend up once
(``moto_dispatch``).

Run as ``python -m fsnode.localstack.aws_server --port P --functions-dir D``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--functions-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    # moto's Step Functions interpreter reaches other services at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(args.port)

    from moto.server import ThreadedMotoServer

    from fsnode.localstack import (
        acm_public_issuer,
        iam_enforcement,
        lambda_dispatch,
        moto_dispatch,
        pca_rules,
        role_credentials,
        s3_checksums,
        s3_conditional_writes,
        s3_ranges,
        states_limits,
    )

    moto_dispatch.install()
    iam_enforcement.install()
    role_credentials.install()  # no credentials outside an invocation's role
    lambda_dispatch.install(
        args.functions_dir.resolve(),
        run_as=lambda role, name: role_credentials.running_as(iam_enforcement.assumed(role, name)),
    )
    s3_ranges.install()
    s3_checksums.install()
    s3_conditional_writes.install()
    states_limits.install()
    pca_rules.install()
    acm_public_issuer.install()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    print(f"aws ready url=http://{args.host}:{args.port}", file=sys.stderr, flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    # moto runs Step Functions executions in non-daemon threads; a normal exit would
    # wait for every one still running (GC waits, warm timeouts). The stack is going
    # away with its state, so leave at once.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
