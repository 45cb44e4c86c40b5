"""The ``fsnode`` commands on files: upload, get, sync, import, expire, share, ls, rm,
plan, rehash."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fsnode.api import ApiError
from fsnode.commands.support import (
    DEFAULT_SHARE_TTL,
    bar,
    client_of,
    emit,
    expiry_text,
    optional_settings,
    safe_name,
    set_total,
)
from fsnode.download import DownloadResult, download_file, download_folder, download_share
from fsnode.settings import SettingsError
from fsnode.sync import folder_prefix, sync_dir


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the file commands on the top-level subparsers."""
    upload = sub.add_parser("upload", parents=[common], help="upload files (resumes)")
    upload.add_argument("paths", nargs="+", metavar="FILE")
    upload.add_argument(
        "--path",
        help="the file's path in fsnode (default: its name); a live file there gets a new version",
    )
    upload.add_argument("--share", action="store_true", help="also mint a share URL")
    upload.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="share lifetime, s")
    upload.add_argument("--no-resume", action="store_true", help="ignore an unfinished upload")
    upload.add_argument("--workers", type=int, default=4, help="parts sent at once")
    upload.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="the file expires this long after"
    )
    upload.set_defaults(func=cmd_upload)

    get = sub.add_parser(
        "get", parents=[common], help="download a file by id or share URL, or a folder share"
    )
    get.add_argument("target", metavar="ID|SHARE_URL")
    get.add_argument(
        "-o",
        "--output",
        help="where to write (default: the file's name; a folder share: this folder)",
    )
    get.add_argument("--workers", type=int, default=4, help="chunks fetched at once")
    get.add_argument(
        "--edge-timeout",
        type=float,
        default=15.0,
        help="seconds to wait on an edge before the next replica",
    )
    get.set_defaults(func=cmd_get)

    sync = sub.add_parser("sync", parents=[common], help="make the files under a prefix match DIR")
    sync.add_argument("directory", metavar="DIR")
    sync.add_argument(
        "--prefix", default="", help="the folder in fsnode (files are PREFIX + their path in DIR)"
    )
    sync.add_argument(
        "--delete", action="store_true", help="remove files under the prefix that DIR lacks"
    )
    sync.set_defaults(func=cmd_sync)

    imp = sub.add_parser("import", parents=[common], help="register an object already in S3")
    imp.add_argument("uri", metavar="s3://BUCKET/KEY")
    imp.add_argument("--version-id", help="the object version to serve")
    imp.add_argument("--content-type", help="override the object's content type")
    imp.add_argument("--path", help="the file's path in fsnode (default: the key)")
    imp.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="the file expires this long after"
    )
    imp.set_defaults(func=cmd_import)

    expire = sub.add_parser("expire", parents=[common], help="set or clear a file's expiry")
    expire.add_argument("id")
    when = expire.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--in",
        dest="expires_in",
        type=int,
        metavar="SECONDS",
        help="expire this many seconds from now",
    )
    when.add_argument("--at", type=int, metavar="UNIX", help="expire at this unix time")
    when.add_argument("--never", action="store_true", help="clear the expiry")
    expire.set_defaults(func=cmd_expire)

    share = sub.add_parser(
        "share", parents=[common], help="mint an expiring share URL of a file or a folder"
    )
    share.add_argument("id", nargs="?", help="the file (or use --prefix for a folder)")
    share.add_argument("--ttl", type=int, default=DEFAULT_SHARE_TTL, help="lifetime, seconds")
    share.add_argument("--not-before", type=int, help="valid from this unix time on")
    share.add_argument("--ip", help="only for clients in this network (CIDR)")
    share.add_argument(
        "--prefix",
        metavar="P/",
        help="share a folder (an HLS/DASH folder): share_url ends in /, a file below it "
        "is share_url + its relative path",
    )
    share.set_defaults(func=cmd_share)

    ls = sub.add_parser("ls", parents=[common], help="list files by path")
    ls.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    ls.set_defaults(func=cmd_ls)
    rm = sub.add_parser("rm", parents=[common], help="delete files")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(func=cmd_rm)
    rehash = sub.add_parser(
        "rehash", parents=[common], help="hash a file from S3 again and repair its recorded hashes"
    )
    rehash.add_argument("id")
    rehash.set_defaults(func=cmd_rehash)
    plan = sub.add_parser("plan", parents=[common], help="each chunk and its replica nodes")
    plan.add_argument("id")
    plan.add_argument("--offset", type=int, help="first byte of the range to plan")
    plan.add_argument("--length", type=int, help="bytes in the range to plan")
    plan.set_defaults(func=cmd_plan)


def cmd_upload(args: argparse.Namespace) -> int:
    if args.path is not None and len(args.paths) != 1:
        raise SettingsError("--path names one file: upload one PATH with it")
    client = client_of(args)
    results = []
    for raw in args.paths:
        path = Path(raw)
        with bar(args, path.stat().st_size, path.name) as progress:
            record = client.upload(
                path,
                remote_path=args.path,
                progress=progress.update,
                resume=not args.no_resume,
                expires_in=args.expires_in,
            )
        result: dict[str, Any] = {
            "id": record["file_id"],
            "path": record["path"],
            "name": record["name"],
            "version": record["version"],
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
            expiry = expiry_text(r) if r["expires_at"] is not None else ""
            print(f"{r['id']}  {r['path']}  {r['size']} bytes{resumed}{expiry}")
            if "share_url" in r:
                print(f"  {r['share_url']}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    target: str = args.target
    if target.startswith(("http://", "https://")):
        settings = optional_settings(args)
        ca_cert = args.ca_cert or (settings.ca_cert if settings else None)
        ca_cert = ca_cert or os.environ.get("FSNODE_CA_CERT")
        if urlparse(target).path.endswith("/"):
            return _get_folder(args, target, ca_cert)
        name = urlparse(target).path.rstrip("/").rsplit("/", 1)[-1] or "download"
        out = Path(args.output or name)
        with bar(args, None, out.name) as progress:
            result = download_share(
                target,
                out,
                ca_cert=ca_cert,
                progress=progress.update,
                on_total=set_total(progress),
                workers=args.workers,
                timeout=args.edge_timeout,
            )
    else:
        client = client_of(args)
        client.edge_timeout = args.edge_timeout
        out = Path(args.output or safe_name(client.get_file(target).get("name")) or target)
        with bar(args, None, out.name) as progress:
            result = download_file(
                client, target, out, progress=progress.update, on_total=set_total(progress)
            )
    emit(args, result.to_json(), f"wrote {out} ({_result_text(result)})")
    return 0


def _get_folder(args: argparse.Namespace, share_url: str, ca_cert: str | None) -> int:
    out = Path(args.output or ".")
    results = download_folder(
        share_url, out, ca_cert=ca_cert, workers=args.workers, timeout=args.edge_timeout
    )
    data = {"folder": str(out), "files": [r.to_json() for r in results]}
    lines = [f"wrote {r.path} ({_result_text(r)})" for r in results]
    emit(args, data, "\n".join(lines) or "the folder is empty")
    return 0


def _result_text(result: DownloadResult) -> str:
    sources = ", ".join(f"{n} from {k}" for k, n in sorted(result.sources.items())) or "nothing"
    text = f"{result.size} bytes; {result.fetched} chunks fetched: {sources}"
    text += f"; {result.resumed} resumed" * bool(result.resumed)
    return text + f"; {result.failovers} failovers" * bool(result.failovers)


def cmd_sync(args: argparse.Namespace) -> int:
    client = client_of(args)

    def report(action: str, name: str) -> None:
        if not args.json:
            print(f"{action:<9} {name}", flush=True)

    done = sync_dir(
        client, Path(args.directory), prefix=args.prefix, delete=args.delete, on_file=report
    )
    summary = (
        f"{len(done.uploaded)} uploaded, {len(done.updated)} updated, "
        f"{len(done.unchanged)} unchanged, {len(done.deleted)} deleted"
    )
    emit(args, done.to_json(), summary)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    parsed = urlparse(args.uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise SettingsError(f"not an s3://BUCKET/KEY address: {args.uri}")
    record = client_of(args).import_object(
        parsed.netloc,
        parsed.path.lstrip("/"),
        version_id=args.version_id,
        content_type=args.content_type,
        path=args.path,
        expires_in=args.expires_in,
    )
    text = f"{record['file_id']}  {record.get('path', '')}  {record.get('size')} bytes"
    text += expiry_text(record) * bool(record.get("expires_at"))
    emit(args, record, text)
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    record = client_of(args).set_expiry(
        args.id, expires_in=args.expires_in, expires_at=args.at, never=args.never
    )
    emit(args, record, f"{record['file_id']}{expiry_text(record)}")
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    if (args.id is None) == (args.prefix is None):
        raise SettingsError("share one file (ID) or one folder (--prefix P/), not both")
    client = client_of(args)
    policy = {"not_before": args.not_before, "ip": args.ip}
    if args.prefix is not None:
        share = client.share_folder(folder_prefix(args.prefix), args.ttl, **policy)
    else:
        share = client.share(args.id, args.ttl, **policy)
    emit(args, share, share["share_url"])
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    files = client_of(args).list_files(args.prefix)
    lines = [f"{f['file_id']}  {f.get('size', '?'):>12}  {f.get('path', '')}" for f in files]
    emit(args, {"prefix": args.prefix, "files": files}, "\n".join(lines) or "no files")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    client = client_of(args)
    answers = [client.delete(file_id) for file_id in args.ids]
    lines = [f"{a['file_id']}  {a.get('status', 'deleting')}" for a in answers]
    emit(args, answers[0] if len(answers) == 1 else answers, "\n".join(lines))
    return 0


def cmd_rehash(args: argparse.Namespace) -> int:
    answer = client_of(args).rehash(args.id)
    how = answer.get("execution") or (answer.get("outcome") or {}).get("outcome", "done")
    emit(args, answer, f"{answer['file_id']} version {answer['version']}: {how}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = client_of(args).plan(args.id, args.offset, args.length)
    nodes = [str(n["node_id"]) for n in plan.get("nodes", [])]
    try:
        chunks = [
            {
                "index": c["index"],
                "offset": c["offset"],
                "length": c["length"],
                "sha256": c.get("sha256"),
                "replicas": [nodes[int(i)] for i in c["replicas"]],
                "s3_fallback": bool(plan.get("s3_url")),
            }
            for c in plan["chunks"]
        ]
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        raise ApiError(502, "bad_response", "the plan names an edge it does not list") from exc
    data = {k: plan.get(k) for k in ("file_id", "version", "size", "chunk_size", "expires")}
    lines = [f"{plan['file_id']} version {plan['version']}  {plan['size']} bytes"]
    lines += [
        f"chunk {c['index']:>5}  @{c['offset']:<12} {c['length']:>9} B  "
        f"{', '.join(c['replicas']) or '(no edge yet)'}" + " + s3" * c["s3_fallback"]
        for c in chunks
    ]
    emit(args, {**data, "chunks": chunks}, "\n".join(lines))
    return 0
