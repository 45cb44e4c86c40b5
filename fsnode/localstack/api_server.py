"""The local stack's control plane: the Chalice app in ``functions/`` served over HTTP.

Run as ``python -m fsnode.localstack.api_server --port P --functions-dir D`` with the
control plane's settings in the environment (PROTOCOL.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--functions-dir", type=Path, required=True)
    parser.add_argument(
        "--schedule-seconds", type=float, help="run every @app.schedule this often instead"
    )
    args = parser.parse_args(argv)

    from chalice.config import Config
    from chalice.local import create_local_server

    from fsnode.localstack import api_gateway, greedy_routes, http_errors
    from fsnode.localstack.app_loader import load_functions_app
    from fsnode.localstack.scheduler import Scheduler

    greedy_routes.install()  # /t/{token}/{proxy+}, as API Gateway routes it
    run_as = _functions_sign_as_their_roles()
    module = load_functions_app(args.functions_dir.resolve())
    for authorizer in _authorizers(module.app):
        authorizer.func = _signing(run_as, authorizer.name, authorizer.func)
    config = Config.create(
        chalice_stage="local", app_name="fsnode", project_dir=str(args.functions_dir)
    )
    api_gateway.install()  # API Gateway's limits, authorizer cache and gateway responses
    http_errors.install()  # parser refusals in the JSON shape, never quoting the request
    server = create_local_server(module.app, config, args.host, args.port)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    scheduler = Scheduler(module, args.schedule_seconds, run_as=run_as)
    scheduler.start()
    print(f"api ready url=http://{args.host}:{args.port}", file=sys.stderr, flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    scheduler.stop()
    server.shutdown()
    return 0


def _functions_sign_as_their_roles() -> Callable[[str], AbstractContextManager[None]]:
    """Routes sign as this process's role (the API handler's, from the environment); the
    authorizer and scheduled functions as theirs, when the local stack gave them."""
    import boto3

    from fsnode.localstack import role_credentials

    own = boto3.Session().get_credentials()
    role_credentials.install(own)
    roles = role_credentials.from_env()
    return lambda name: role_credentials.running_as(roles.get(name))


def _authorizers(app: Any) -> list[Any]:
    found: dict[int, Any] = {}
    for methods in app.routes.values():
        for entry in methods.values():
            if entry.authorizer is not None and hasattr(entry.authorizer, "func"):
                found[id(entry.authorizer)] = entry.authorizer
    return list(found.values())


def _signing(run_as: Callable[[str], AbstractContextManager[None]], name: str,
             func: Callable[..., Any]) -> Callable[..., Any]:
    def signed(*args: Any, **kwargs: Any) -> Any:
        with run_as(name):
            return func(*args, **kwargs)

    return signed


if __name__ == "__main__":
    raise SystemExit(main())
