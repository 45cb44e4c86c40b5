"""``fsnode nodes`` and ``fsnode cluster``: the edge fleet as the control plane sees it."""

from __future__ import annotations

import argparse
from typing import Any

from fsnode.commands.support import client_of, emit, size_text


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``nodes`` and ``cluster`` on the top-level subparsers."""
    sub.add_parser("nodes", parents=[common], help="list edge nodes").set_defaults(func=cmd_nodes)
    sub.add_parser("cluster", parents=[common], help="capacity and per-node load").set_defaults(
        func=cmd_cluster
    )


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
