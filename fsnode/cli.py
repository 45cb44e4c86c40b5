"""The ``fsnode`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fsnode.client import ApiError, FsnodeClient
from fsnode.localstack import processes
from fsnode.localstack.stack import LocalStack, StackInfo, StackOptions, down, kill, restart
from fsnode.settings import (
    ClientSettings,
    SettingsError,
    default_state_dir,
    last_stack_dir,
    remember_stack,
)

DEFAULT_SHARE_TTL = 24 * 3600


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ApiError, SettingsError, RuntimeError, TimeoutError, OSError) as exc:
        _fail(args, exc)
        return 1


# -- local stack -----------------------------------------------------------------


def cmd_local_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir or default_state_dir())
    options = StackOptions(
        state_dir=state_dir,
        nodes=args.nodes,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        schedule_seconds=args.schedule_seconds,
    )
    stack = LocalStack(options)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    info = stack.up()
    remember_stack(state_dir)
    try:
        summary: dict[str, Any] = {"stack": str(state_dir / "stack.json"), "api": info.api}
        if args.demo:
            summary.update(_demo(info))
        _print_up(args, info, summary)
        if args.detach:
            return 0
        print("local stack running; Ctrl-C stops it", file=sys.stderr, flush=True)
        while not stopping.wait(1.0):
            dead = [c.name for c in stack.children if c.popen and c.popen.poll() is not None]
            if dead:
                print(f"stopping: {', '.join(dead)} exited", file=sys.stderr, flush=True)
                break
    except BaseException:
        stack.stop()
        raise
    left = stack.stop()
    print("local stack stopped" + (f"; still alive: {left}" if left else ""), file=sys.stderr)
    return 0 if not left else 1


def cmd_local_down(args: argparse.Namespace) -> int:
    state_dir = _stack_dir(args)
    left = down(state_dir)
    _emit(args, {"stopped": str(state_dir), "left": left}, f"stopped the stack in {state_dir}")
    return 0 if not left else 1


def cmd_local_restart(args: argparse.Namespace) -> int:
    pid = restart(_stack_dir(args), args.name)
    _emit(args, {"name": args.name, "pid": pid}, f"{args.name} restarted, pid {pid}")
    return 0


def cmd_local_kill(args: argparse.Namespace) -> int:
    sig = signal.Signals[f"SIG{args.signal.upper().removeprefix('SIG')}"]
    pid = kill(_stack_dir(args), args.name, sig)
    _emit(args, {"name": args.name, "pid": pid, "signal": sig.name}, f"sent {sig.name} to {pid}")
    return 0


def cmd_local_status(args: argparse.Namespace) -> int:
    info = StackInfo.load(_stack_dir(args))
    procs = [
        {"name": p["name"], "pid": p["pid"], "alive": processes.is_alive(int(p["pid"]))}
        for p in info.processes
    ]
    data = {"api": info.api, "aws_endpoint": info.aws_endpoint, "processes": procs}
    lines = [f"api {info.api}", f"aws {info.aws_endpoint}"]
    lines += [f"{p['name']:<8} pid {p['pid']:<8} {'up' if p['alive'] else 'DOWN'}" for p in procs]
    _emit(args, data, "\n".join(lines))
    return 0 if all(p["alive"] for p in procs) else 1


# -- files -----------------------------------------------------------------------


def cmd_upload(args: argparse.Namespace) -> int:
    client = _client(args)
    results = []
    for raw in args.paths:
        path = Path(raw)
        with tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=path.name,
            disable=args.json or not sys.stderr.isatty(),
        ) as bar:
            record = client.upload(path, progress=bar.update)
        result: dict[str, Any] = {
            "id": record["file_id"],
            "name": path.name,
            "size": record["size"],
        }
        if args.share:
            result["share_url"] = client.share(record["file_id"], args.ttl)["share_url"]
        results.append(result)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            print(f"{r['id']}  {r['name']}  {r['size']} bytes")
            if "share_url" in r:
                print(f"  {r['share_url']}")
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    share = _client(args).share(args.id, args.ttl)
    _emit(args, share, share["share_url"])
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    files = _client(args).list_files()
    lines = [f"{f['file_id']}  {f.get('size', '?'):>12}  {f.get('name', '')}" for f in files]
    _emit(args, {"files": files}, "\n".join(lines) or "no files")
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    nodes = _client(args).nodes()
    lines = [f"{n['node_id']}  {n['status']:<9} {n['endpoint']}" for n in nodes]
    _emit(args, {"nodes": nodes}, "\n".join(lines) or "no nodes")
    return 0


# -- plumbing --------------------------------------------------------------------


def _demo(info: StackInfo) -> dict[str, Any]:
    from fsnode.localstack.demo import make_demo_video

    video = make_demo_video(Path(info.state_dir) / "demo.mp4")
    settings = ClientSettings(api_url=info.api, api_key=info.api_key, ca_cert=info.ca_cert)
    client = FsnodeClient(settings)
    record = client.upload(video, content_type="video/mp4")
    share = client.share(record["file_id"], DEFAULT_SHARE_TTL)
    return {"demo_file_id": record["file_id"], "share_url": share["share_url"]}


def _print_up(args: argparse.Namespace, info: StackInfo, summary: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({**summary, "edges": [e.url for e in info.edges]}), flush=True)
        return
    print(f"control plane  {info.api}  (upload page: {info.api}/)")
    print(f"aws (moto)     {info.aws_endpoint}")
    for edge in info.edges:
        print(f"edge           {edge.url}  node {edge.node_id}")
    print(f"CA certificate {info.ca_cert}")
    print(f"api key        {info.api_key}")
    if "share_url" in summary:
        print("\nDemo video share URL (open in a browser, or: ffplay -ca_file CA URL):")
        print(summary["share_url"])
        print(f"\nffplay -ca_file {info.ca_cert} '{summary['share_url']}'")
    sys.stdout.flush()


def _stack_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    last = last_stack_dir()
    if last is None:
        raise SettingsError("no local stack known: pass --state-dir")
    return last


def _client(args: argparse.Namespace) -> FsnodeClient:
    settings = ClientSettings.resolve(
        api_url=args.api_url,
        api_key=args.api_key,
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )
    return FsnodeClient(settings)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if args.json else text)


def _fail(args: argparse.Namespace, exc: Exception) -> None:
    if getattr(args, "json", False):
        code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
        print(json.dumps({"error": {"code": code, "message": str(exc)}}), file=sys.stderr)
    else:
        print(f"fsnode: error: {exc}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--state-dir", help="a local stack's folder (default: the last one)")
    common.add_argument("--api-url", help="control plane URL (env FSNODE_API_URL)")
    common.add_argument("--api-key", help="API key (env FSNODE_API_KEY)")

    parser = argparse.ArgumentParser(prog="fsnode", description="fsnode: a CDN for S3")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    local = sub.add_parser("local", help="run the whole system on this machine")
    local_sub = local.add_subparsers(required=True, metavar="ACTION")
    up = local_sub.add_parser("up", parents=[common], help="start the local stack")
    up.add_argument("--nodes", type=int, default=3, help="edge nodes to start (default 3)")
    up.add_argument("--detach", action="store_true", help="start and return; stop with down")
    up.add_argument("--demo", action="store_true", help="upload and share a demo video")
    up.add_argument("--heartbeat-interval", type=int, default=5, help="seconds (default 5)")
    up.add_argument(
        "--heartbeat-timeout", type=int, default=30, help="seconds until a node is dead"
    )
    up.add_argument(
        "--schedule-seconds",
        type=float,
        help="run scheduled functions (prune) this often instead of their rate",
    )
    up.set_defaults(func=cmd_local_up)
    local_sub.add_parser("down", parents=[common], help="stop a local stack").set_defaults(
        func=cmd_local_down
    )
    local_sub.add_parser("status", parents=[common], help="show a local stack").set_defaults(
        func=cmd_local_status
    )
    again = local_sub.add_parser(
        "restart", parents=[common], help="restart one process (aws, api, edge-N) as it was"
    )
    again.add_argument("name")
    again.set_defaults(func=cmd_local_restart)
    fault = local_sub.add_parser("kill", parents=[common], help="signal one process (a fault)")
    fault.add_argument("name")
    fault.add_argument("--signal", default="KILL", help="KILL (default), TERM, STOP, CONT")
    fault.set_defaults(func=cmd_local_kill)

    upload = sub.add_parser("upload", parents=[common], help="upload files")
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument("--share", action="store_true", help="also mint a share URL")
    upload.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="share lifetime, s")
    upload.set_defaults(func=cmd_upload)

    share = sub.add_parser("share", parents=[common], help="mint an expiring share URL")
    share.add_argument("id")
    share.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="lifetime, seconds")
    share.set_defaults(func=cmd_share)

    sub.add_parser("ls", parents=[common], help="list files").set_defaults(func=cmd_ls)
    sub.add_parser("nodes", parents=[common], help="list edge nodes").set_defaults(func=cmd_nodes)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
