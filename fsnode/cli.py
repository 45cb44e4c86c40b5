"""The ``fsnode`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from fsnode import cli_keys
from fsnode import file_commands as files
from fsnode.cli_support import (
    DEFAULT_SHARE_TTL,
    client_of,
    emit,
    fail,
    size_text,
    stack_dir,
)
from fsnode.client import ApiError, FsnodeClient, UploadInterrupted
from fsnode.download import DownloadError
from fsnode.localstack import processes
from fsnode.localstack.stack import LocalStack, StackInfo, StackOptions, down, kill, restart
from fsnode.settings import (
    ClientSettings,
    SettingsError,
    default_state_dir,
    remember_stack,
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (
        ApiError,
        SettingsError,
        DownloadError,
        UploadInterrupted,
        requests.RequestException,
        RuntimeError,
        TimeoutError,
        OSError,
    ) as exc:
        fail(args, exc)
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
        **({"chunk_size": args.chunk_size} if args.chunk_size else {}),
        control_plane_env=dict(_setting(raw) for raw in args.env),
        edge_env_by_name=_edge_settings(args.edge_env_for),
        origin_url=args.origin_url,
        domain=args.domain,
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


def _setting(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    if not sep or not name.strip():
        raise SettingsError(f"expected NAME=VALUE, got {raw!r}")
    return name.strip(), value


def _edge_settings(raws: list[str]) -> dict[str, dict[str, str]]:
    """``edge-N:NAME=VALUE`` flags, by edge name."""
    out: dict[str, dict[str, str]] = {}
    for raw in raws:
        target, sep, rest = raw.partition(":")
        if not sep or not target.startswith("edge-"):
            raise SettingsError(f"expected edge-N:NAME=VALUE, got {raw!r}")
        name, value = _setting(rest)
        out.setdefault(target, {})[name] = value
    return out


def cmd_local_down(args: argparse.Namespace) -> int:
    state_dir = stack_dir(args)
    left = down(state_dir, args.grace)
    emit(args, {"stopped": str(state_dir), "left": left}, f"stopped the stack in {state_dir}")
    return 0 if not left else 1


def cmd_local_restart(args: argparse.Namespace) -> int:
    pid = restart(stack_dir(args), args.name)
    emit(args, {"name": args.name, "pid": pid}, f"{args.name} restarted, pid {pid}")
    return 0


def cmd_local_kill(args: argparse.Namespace) -> int:
    sig = signal.Signals[f"SIG{args.signal.upper().removeprefix('SIG')}"]
    pid = kill(stack_dir(args), args.name, sig)
    emit(args, {"name": args.name, "pid": pid, "signal": sig.name}, f"sent {sig.name} to {pid}")
    return 0


def cmd_local_status(args: argparse.Namespace) -> int:
    info = StackInfo.load(stack_dir(args))
    procs = [
        {"name": p["name"], "pid": p["pid"], "alive": processes.is_alive(int(p["pid"]))}
        for p in info.processes
    ]
    data = {"api": info.api, "aws_endpoint": info.aws_endpoint, "processes": procs}
    lines = [f"api {info.api}", f"aws {info.aws_endpoint}"]
    lines += [f"{p['name']:<8} pid {p['pid']:<8} {'up' if p['alive'] else 'DOWN'}" for p in procs]
    emit(args, data, "\n".join(lines))
    return 0 if all(p["alive"] for p in procs) else 1


# -- nodes -----------------------------------------------------------------------


def cmd_nodes(args: argparse.Namespace) -> int:
    listing = client_of(args).node_listing()
    nodes, domain = listing["nodes"], listing.get("edge_domain")
    lines = [
        f"{n['node_id']}  {n['status']:<9} load {float(n.get('load') or 0):5.2f}  "
        f"used {size_text(n.get('used_bytes'))}  {n['endpoint']}"
        + (f"  https://{n['public_name']}" if n.get("public_name") else "")
        for n in nodes
    ]
    lines.append(f"public names: NODE.{domain} (publicly trusted certificate)" if domain else
                 "public names: none (no domain set): viewers must trust the private CA")
    emit(args, {"nodes": nodes, "edge_domain": domain}, "\n".join(lines))
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    view = client_of(args).cluster()
    lines = [
        f"total {size_text(view.get('total_bytes'))}   used {size_text(view.get('used_bytes'))}   "
        f"free {size_text(view.get('free_bytes'))}   live nodes {view.get('live_nodes', '?')}",
        "",
        f"{'node':<32}  {'status':<8}  {'load':>5}  {'used':>10}  {'free':>10}  {'capacity':>10}",
    ]
    for n in view.get("nodes", []):
        lines.append(
            f"{n.get('node_id', '?'):<32}  {n.get('status', '?'):<8}  "
            f"{float(n.get('load') or 0):5.2f}  {size_text(n.get('used_bytes')):>10}  "
            f"{size_text(n.get('free_bytes')):>10}  {size_text(n.get('capacity_bytes')):>10}"
        )
    emit(args, view, "\n".join(lines))
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


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--state-dir", help="a local stack's folder (default: the last one)")
    common.add_argument("--api-url", help="control plane URL (env FSNODE_API_URL)")
    common.add_argument("--api-key", help="API key (env FSNODE_API_KEY)")
    common.add_argument("--ca-cert", help="CA certificate the edges chain to (env FSNODE_CA_CERT)")

    parser = argparse.ArgumentParser(prog="fsnode", description="fsnode: a CDN for S3")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    local = sub.add_parser("local", help="run the whole system on this machine")
    local_sub = local.add_subparsers(required=True, metavar="ACTION")
    up = local_sub.add_parser("up", parents=[common], help="start the local stack")
    up.add_argument("--nodes", type=int, default=3, help="edge nodes to start (default 3)")
    up.add_argument("--domain", default=None,
                    help="give edges public names NODE.edges.DOMAIN (moto's Route 53 and ACM, "
                         "the local CA as the public issuer: trust STATE/public-ca.pem)")
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
    up.add_argument("--chunk-size", type=int, help="bytes per chunk (default 4 MiB)")
    up.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a control-plane setting, e.g. FSNODE_WARM_TIMEOUT=5 (repeatable)",
    )
    up.add_argument(
        "--edge-env-for",
        action="append",
        default=[],
        metavar="edge-N:NAME=VALUE",
        help="a setting for one edge only, e.g. a fault on edge-3 (repeatable)",
    )
    up.add_argument(
        "--origin-url",
        help="S3 endpoint for the edges only (e.g. a fault proxy in front of the stack's moto)",
    )
    up.set_defaults(func=cmd_local_up)
    stop = local_sub.add_parser("down", parents=[common], help="stop a local stack")
    stop.add_argument(
        "--grace", type=float, default=15.0,
        help="seconds a process may take to exit on SIGTERM before SIGKILL (default 15)",
    )
    stop.set_defaults(func=cmd_local_down)
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

    upload = sub.add_parser("upload", parents=[common], help="upload files (resumes)")
    upload.add_argument("paths", nargs="+", metavar="FILE")
    upload.add_argument("--path", help="the file's path in fsnode (default: its name); "
                        "a live file there gets a new version")
    upload.add_argument("--share", action="store_true", help="also mint a share URL")
    upload.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="share lifetime, s")
    upload.add_argument("--no-resume", action="store_true", help="ignore an unfinished upload")
    upload.add_argument("--workers", type=int, default=4, help="parts sent at once")
    upload.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="the file expires this long after"
    )
    upload.set_defaults(func=files.cmd_upload)

    get = sub.add_parser("get", parents=[common],
                         help="download a file by id or share URL, or a folder share")
    get.add_argument("target", metavar="ID|SHARE_URL")
    get.add_argument("-o", "--output", help="where to write (default: the file's name; a "
                     "folder share: this folder)")
    get.add_argument("--workers", type=int, default=4, help="chunks fetched at once")
    get.add_argument(
        "--edge-timeout",
        type=float,
        default=15.0,
        help="seconds to wait on an edge before the next replica",
    )
    get.set_defaults(func=files.cmd_get)

    sync = sub.add_parser("sync", parents=[common],
                          help="make the files under a prefix match DIR")
    sync.add_argument("directory", metavar="DIR")
    sync.add_argument("--prefix", default="",
                      help="the folder in fsnode (files are PREFIX + their path in DIR)")
    sync.add_argument("--delete", action="store_true",
                      help="remove files under the prefix that DIR lacks")
    sync.set_defaults(func=files.cmd_sync)

    imp = sub.add_parser("import", parents=[common], help="register an object already in S3")
    imp.add_argument("uri", metavar="s3://BUCKET/KEY")
    imp.add_argument("--version-id", help="the object version to serve")
    imp.add_argument("--content-type", help="override the object's content type")
    imp.add_argument("--path", help="the file's path in fsnode (default: the key)")
    imp.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="the file expires this long after"
    )
    imp.set_defaults(func=files.cmd_import)

    expire = sub.add_parser("expire", parents=[common], help="set or clear a file's expiry")
    expire.add_argument("id")
    when = expire.add_mutually_exclusive_group(required=True)
    when.add_argument("--in", dest="expires_in", type=int, metavar="SECONDS",
                      help="expire this many seconds from now")
    when.add_argument("--at", type=int, metavar="UNIX", help="expire at this unix time")
    when.add_argument("--never", action="store_true", help="clear the expiry")
    expire.set_defaults(func=files.cmd_expire)

    share = sub.add_parser("share", parents=[common],
                           help="mint an expiring share URL of a file or a folder")
    share.add_argument("id", nargs="?", help="the file (or use --prefix for a folder)")
    share.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="lifetime, seconds")
    share.add_argument("--not-before", type=int, help="valid from this unix time on")
    share.add_argument("--ip", help="only for clients in this network (CIDR)")
    share.add_argument(
        "--prefix", metavar="P/",
        help="share a folder (an HLS/DASH folder): share_url ends in /, a file below it "
             "is share_url + its relative path",
    )
    share.set_defaults(func=files.cmd_share)

    ls = sub.add_parser("ls", parents=[common], help="list files by path")
    ls.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    ls.set_defaults(func=files.cmd_ls)
    rm = sub.add_parser("rm", parents=[common], help="delete files")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(func=files.cmd_rm)
    rehash = sub.add_parser("rehash", parents=[common],
                            help="hash a file from S3 again and repair its recorded hashes")
    rehash.add_argument("id")
    rehash.set_defaults(func=files.cmd_rehash)
    sub.add_parser("nodes", parents=[common], help="list edge nodes").set_defaults(func=cmd_nodes)
    sub.add_parser("cluster", parents=[common], help="capacity and per-node load").set_defaults(
        func=cmd_cluster
    )
    plan = sub.add_parser("plan", parents=[common], help="each chunk and its replica nodes")
    plan.add_argument("id")
    plan.add_argument("--offset", type=int, help="first byte of the range to plan")
    plan.add_argument("--length", type=int, help="bytes in the range to plan")
    plan.set_defaults(func=files.cmd_plan)
    cli_keys.add_parser(sub, common, client_of, emit)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
