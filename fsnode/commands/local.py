"""``fsnode local up|down|status|restart|kill``: the whole system on this machine."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from fsnode.client import FsnodeClient
from fsnode.commands.support import DEFAULT_SHARE_TTL, emit, stack_dir
from fsnode.localstack import processes
from fsnode.localstack.stack import LocalStack, StackInfo, StackOptions, down, kill, restart
from fsnode.settings import ClientSettings, SettingsError, default_state_dir, remember_stack

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StackOptions)}
_OPTIONAL = ("nodes", "heartbeat_interval", "heartbeat_timeout", "chunk_size")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``local`` and its actions on the top-level subparsers."""
    local = sub.add_parser("local", help="run the whole system on this machine")
    local_sub = local.add_subparsers(required=True, metavar="ACTION")
    up = local_sub.add_parser("up", parents=[common], help="start the local stack")
    up.add_argument("--nodes", type=int, help=f"edge nodes to start (default {_DEFAULTS['nodes']})")
    up.add_argument("--detach", action="store_true", help="start and return; stop with down")
    up.add_argument("--demo", action="store_true", help="upload and share a demo video")
    up.add_argument("--heartbeat-interval", type=int,
                    help=f"seconds (default {_DEFAULTS['heartbeat_interval']})")
    up.add_argument("--heartbeat-timeout", type=int,
                    help="seconds until a node is dead "
                         f"(default {_DEFAULTS['heartbeat_timeout']})")
    up.add_argument(
        "--schedule-seconds",
        type=float,
        help="run scheduled functions (prune) this often instead of their rate",
    )
    up.add_argument("--chunk-size", type=int,
                    help=f"bytes per chunk (default {_DEFAULTS['chunk_size']})")
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
    up.add_argument("--domain", default=None,
                    help="give edges public names NODE.edges.DOMAIN (moto's Route 53 and ACM, "
                         "the local CA as the public issuer: trust STATE/public-ca.pem)")
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


def cmd_local_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir or default_state_dir())
    options = StackOptions(
        state_dir=state_dir,
        schedule_seconds=args.schedule_seconds,
        # Unset flags take StackOptions' defaults (written there once).
        **{name: getattr(args, name) for name in _OPTIONAL
           if getattr(args, name) is not None},
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
