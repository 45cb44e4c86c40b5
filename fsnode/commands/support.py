"""What every ``fsnode`` command shares: settings, the client, output, progress bars."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fsnode.api import ApiError
from fsnode.client import FsnodeClient
from fsnode.settings import ClientSettings, SettingsError, last_stack_dir

DEFAULT_SHARE_TTL = 24 * 3600


def stack_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    last = last_stack_dir()
    if last is None:
        raise SettingsError("no local stack known: pass --state-dir")
    return last


def settings_of(args: argparse.Namespace) -> ClientSettings:
    return ClientSettings.resolve(
        api_url=args.api_url,
        api_key=args.api_key,
        ca_cert=args.ca_cert,
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )


def optional_settings(args: argparse.Namespace) -> ClientSettings | None:
    # A share URL needs no control plane settings; the CA may still come from them.
    try:
        return settings_of(args)
    except SettingsError:
        return None


def client_of(args: argparse.Namespace) -> FsnodeClient:
    return FsnodeClient(settings_of(args), workers=getattr(args, "workers", 4))


def bar(args: argparse.Namespace, total: int | None, desc: str) -> tqdm[Any]:
    """A byte progress bar on stderr; silent for --json and when stderr is not a terminal."""
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=desc,
        disable=args.json or not sys.stderr.isatty(),
    )


def set_total(progress: tqdm[Any]) -> Callable[[int], None]:
    def update(total: int) -> None:
        progress.total = total
        progress.refresh()

    return update


def size_text(value: Any) -> str:
    if value is None:
        return "?"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)


def safe_name(name: Any) -> str | None:
    """A file name from the record, never a path that escapes the current folder."""
    if not isinstance(name, str):
        return None
    base = Path(name.replace("\\", "/")).name
    return base if base not in ("", ".", "..") else None


def expiry_text(record: dict[str, Any]) -> str:
    at = record.get("expires_at")
    if at is None:
        return "  never expires"
    return f"  expires {datetime.fromtimestamp(int(at), UTC):%Y-%m-%d %H:%M:%S} UTC ({at})"


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if args.json else text)


def fail(args: argparse.Namespace, exc: Exception) -> None:
    if getattr(args, "json", False):
        code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
        print(json.dumps({"error": {"code": code, "message": str(exc)}}), file=sys.stderr)
    else:
        print(f"fsnode: error: {exc}", file=sys.stderr)
