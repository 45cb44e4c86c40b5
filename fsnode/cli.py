"""The ``fsnode`` command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
from tqdm import tqdm

from fsnode import cli_keys
from fsnode.client import ApiError, FsnodeClient, UploadInterrupted
from fsnode.download import DownloadError, download_file, download_share
from fsnode.localstack import processes
from fsnode.localstack.stack import LocalStack, StackInfo, StackOptions, down, kill, restart
from fsnode.settings import (
    ClientSettings,
    SettingsError,
    default_state_dir,
    last_stack_dir,
    remember_stack,
)
from fsnode.sync import sync_dir

DEFAULT_SHARE_TTL = 24 * 3600


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
        **({"chunk_size": args.chunk_size} if args.chunk_size else {}),
        control_plane_env=dict(_setting(raw) for raw in args.env),
        edge_env_by_name=_edge_settings(args.edge_env_for),
        origin_url=args.origin_url,
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
    state_dir = _stack_dir(args)
    left = down(state_dir, args.grace)
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
        with _bar(args, path.stat().st_size, path.name) as bar:
            record = client.upload(path, progress=bar.update, resume=not args.no_resume,
                                   expires_in=args.expires_in)
        result: dict[str, Any] = {
            "id": record["file_id"],
            "name": path.name,
            "size": record["size"],
            "parts_sent": record["parts_sent"],
            "parts_resumed": record["parts_resumed"],
            "expires_at": record.get("expires_at"),
        }
        if args.share:
            result["share_url"] = client.share(record["file_id"], args.ttl)["share_url"]
        results.append(result)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            resumed = f" (resumed: {r['parts_resumed']} parts already sent)" * bool(
                r["parts_resumed"]
            )
            expiry = _expiry_text(r) if r["expires_at"] is not None else ""
            print(f"{r['id']}  {r['name']}  {r['size']} bytes{resumed}{expiry}")
            if "share_url" in r:
                print(f"  {r['share_url']}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    target: str = args.target
    if target.startswith(("http://", "https://")):
        settings = _optional_settings(args)
        ca_cert = args.ca_cert or (settings.ca_cert if settings else None)
        ca_cert = ca_cert or os.environ.get("FSNODE_CA_CERT")
        name = urlparse(target).path.rstrip("/").rsplit("/", 1)[-1] or "download"
        out = Path(args.output or name)
        with _bar(args, None, out.name) as bar:
            result = download_share(
                target,
                out,
                ca_cert=ca_cert,
                progress=bar.update,
                on_total=_set_total(bar),
                workers=args.workers,
                timeout=args.edge_timeout,
            )
    else:
        client = _client(args)
        client.edge_timeout = args.edge_timeout
        out = Path(args.output or _safe_name(client.get_file(target).get("name")) or target)
        with _bar(args, None, out.name) as bar:
            result = download_file(
                client, target, out, progress=bar.update, on_total=_set_total(bar)
            )
    data = result.to_json()
    sources = ", ".join(f"{n} from {k}" for k, n in sorted(result.sources.items())) or "nothing"
    text = f"wrote {out} ({result.size} bytes; {result.fetched} chunks fetched: {sources}"
    text += f"; {result.resumed} resumed" * bool(result.resumed)
    text += f"; {result.failovers} failovers" * bool(result.failovers) + ")"
    _emit(args, data, text)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    client = _client(args)

    def report(action: str, name: str) -> None:
        if not args.json:
            print(f"{action:<9} {name}", flush=True)

    done = sync_dir(client, Path(args.directory), delete=args.delete, on_file=report)
    summary = (
        f"{len(done.uploaded)} uploaded, {len(done.updated)} updated, "
        f"{len(done.unchanged)} unchanged, {len(done.deleted)} deleted"
    )
    _emit(args, done.to_json(), summary)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    parsed = urlparse(args.uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise SettingsError(f"not an s3://BUCKET/KEY address: {args.uri}")
    record = _client(args).import_object(
        parsed.netloc,
        parsed.path.lstrip("/"),
        version_id=args.version_id,
        content_type=args.content_type,
        name=args.name,
        expires_in=args.expires_in,
    )
    text = f"{record['file_id']}  {record.get('name', '')}  {record.get('size')} bytes"
    text += _expiry_text(record) * bool(record.get("expires_at"))
    _emit(args, record, text)
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    record = _client(args).set_expiry(
        args.id, expires_in=args.expires_in, expires_at=args.at, never=args.never
    )
    _emit(args, record, f"{record['file_id']}{_expiry_text(record)}")
    return 0


def _expiry_text(record: dict[str, Any]) -> str:
    at = record.get("expires_at")
    if at is None:
        return "  never expires"
    return f"  expires {datetime.fromtimestamp(int(at), UTC):%Y-%m-%d %H:%M:%S} UTC ({at})"


def cmd_share(args: argparse.Namespace) -> int:
    share = _client(args).share(
        args.id, args.ttl, not_before=args.not_before, ip=args.ip, prefix=args.prefix
    )
    _emit(args, share, share["share_url"])
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    files = _client(args).list_files()
    lines = [f"{f['file_id']}  {f.get('size', '?'):>12}  {f.get('name', '')}" for f in files]
    _emit(args, {"files": files}, "\n".join(lines) or "no files")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    client = _client(args)
    answers = [client.delete(file_id) for file_id in args.ids]
    lines = [f"{a['file_id']}  {a.get('status', 'deleting')}" for a in answers]
    _emit(args, answers[0] if len(answers) == 1 else answers, "\n".join(lines))
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    nodes = _client(args).nodes()
    lines = [
        f"{n['node_id']}  {n['status']:<9} load {float(n.get('load') or 0):5.2f}  "
        f"used {_size(n.get('used_bytes'))}  {n['endpoint']}"
        for n in nodes
    ]
    _emit(args, {"nodes": nodes}, "\n".join(lines) or "no nodes")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    view = _client(args).cluster()
    lines = [
        f"total {_size(view.get('total_bytes'))}   used {_size(view.get('used_bytes'))}   "
        f"free {_size(view.get('free_bytes'))}   live nodes {view.get('live_nodes', '?')}",
        "",
        f"{'node':<32}  {'status':<8}  {'load':>5}  {'used':>10}  {'free':>10}  {'capacity':>10}",
    ]
    for n in view.get("nodes", []):
        lines.append(
            f"{n.get('node_id', '?'):<32}  {n.get('status', '?'):<8}  "
            f"{float(n.get('load') or 0):5.2f}  {_size(n.get('used_bytes')):>10}  "
            f"{_size(n.get('free_bytes')):>10}  {_size(n.get('capacity_bytes')):>10}"
        )
    _emit(args, view, "\n".join(lines))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _client(args).plan(args.id, args.offset, args.length)
    chunks = [
        {
            "index": c["index"],
            "offset": c["offset"],
            "length": c["length"],
            "sha256": c.get("sha256"),
            "replicas": [r["node_id"] for r in c.get("replicas", [])],
            "s3_fallback": bool(c.get("s3_url")),
        }
        for c in plan["chunks"]
    ]
    data = {k: plan.get(k) for k in ("file_id", "version", "size", "chunk_size", "expires")}
    lines = [f"{plan['file_id']} version {plan['version']}  {plan['size']} bytes"]
    lines += [
        f"chunk {c['index']:>5}  @{c['offset']:<12} {c['length']:>9} B  "
        f"{', '.join(c['replicas']) or '(no edge yet)'}" + " + s3" * c["s3_fallback"]
        for c in chunks
    ]
    _emit(args, {**data, "chunks": chunks}, "\n".join(lines))
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


def _settings(args: argparse.Namespace) -> ClientSettings:
    return ClientSettings.resolve(
        api_url=args.api_url,
        api_key=args.api_key,
        ca_cert=args.ca_cert,
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )


def _optional_settings(args: argparse.Namespace) -> ClientSettings | None:
    # A share URL needs no control plane settings; the CA may still come from them.
    try:
        return _settings(args)
    except SettingsError:
        return None


def _client(args: argparse.Namespace) -> FsnodeClient:
    return FsnodeClient(_settings(args), workers=getattr(args, "workers", 4))


def _bar(args: argparse.Namespace, total: int | None, desc: str) -> tqdm[Any]:
    """A byte progress bar on stderr; silent for --json and when stderr is not a terminal."""
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=desc,
        disable=args.json or not sys.stderr.isatty(),
    )


def _set_total(bar: tqdm[Any]) -> Callable[[int], None]:
    def set_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    return set_total


def _size(value: Any) -> str:
    if value is None:
        return "?"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)


def _safe_name(name: Any) -> str | None:
    """A file name from the record, never a path that escapes the current folder."""
    if not isinstance(name, str):
        return None
    base = Path(name.replace("\\", "/")).name
    return base if base not in ("", ".", "..") else None


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
    common.add_argument("--ca-cert", help="CA certificate the edges chain to (env FSNODE_CA_CERT)")

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
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument("--share", action="store_true", help="also mint a share URL")
    upload.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="share lifetime, s")
    upload.add_argument("--no-resume", action="store_true", help="ignore an unfinished upload")
    upload.add_argument("--workers", type=int, default=4, help="parts sent at once")
    upload.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="the file expires this long after"
    )
    upload.set_defaults(func=cmd_upload)

    get = sub.add_parser("get", parents=[common], help="download a file by id or share URL")
    get.add_argument("target", metavar="ID|SHARE_URL")
    get.add_argument("-o", "--output", help="where to write (default: the file's name)")
    get.add_argument("--workers", type=int, default=4, help="chunks fetched at once")
    get.add_argument(
        "--edge-timeout",
        type=float,
        default=15.0,
        help="seconds to wait on an edge before the next replica",
    )
    get.set_defaults(func=cmd_get)

    sync = sub.add_parser("sync", parents=[common], help="upload new and changed files")
    sync.add_argument("directory", metavar="DIR")
    sync.add_argument("--delete", action="store_true", help="remove files gone from DIR")
    sync.set_defaults(func=cmd_sync)

    imp = sub.add_parser("import", parents=[common], help="register an object already in S3")
    imp.add_argument("uri", metavar="s3://BUCKET/KEY")
    imp.add_argument("--version-id", help="the object version to serve")
    imp.add_argument("--content-type", help="override the object's content type")
    imp.add_argument("--name", help="a display name (default: the key's last part)")
    imp.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="the file expires this long after"
    )
    imp.set_defaults(func=cmd_import)

    expire = sub.add_parser("expire", parents=[common], help="set or clear a file's expiry")
    expire.add_argument("id")
    when = expire.add_mutually_exclusive_group(required=True)
    when.add_argument("--in", dest="expires_in", type=int, metavar="SECONDS",
                      help="expire this many seconds from now")
    when.add_argument("--at", type=int, metavar="UNIX", help="expire at this unix time")
    when.add_argument("--never", action="store_true", help="clear the expiry")
    expire.set_defaults(func=cmd_expire)

    share = sub.add_parser("share", parents=[common], help="mint an expiring share URL")
    share.add_argument("id")
    share.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="lifetime, seconds")
    share.add_argument("--not-before", type=int, help="valid from this unix time on")
    share.add_argument("--ip", help="only for clients in this network (CIDR)")
    share.add_argument(
        "--prefix", help="cover every file whose name starts with this (an HLS/DASH folder)"
    )
    share.set_defaults(func=cmd_share)

    sub.add_parser("ls", parents=[common], help="list files").set_defaults(func=cmd_ls)
    rm = sub.add_parser("rm", parents=[common], help="delete files")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(func=cmd_rm)
    sub.add_parser("nodes", parents=[common], help="list edge nodes").set_defaults(func=cmd_nodes)
    sub.add_parser("cluster", parents=[common], help="capacity and per-node load").set_defaults(
        func=cmd_cluster
    )
    plan = sub.add_parser("plan", parents=[common], help="each chunk and its replica nodes")
    plan.add_argument("id")
    plan.add_argument("--offset", type=int, help="first byte of the range to plan")
    plan.add_argument("--length", type=int, help="bytes in the range to plan")
    plan.set_defaults(func=cmd_plan)
    cli_keys.add_parser(sub, common, _client, _emit)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
