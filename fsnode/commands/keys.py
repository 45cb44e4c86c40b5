"""``fsnode keys create|list|revoke``: API keys, managed with an admin key."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from fsnode.commands.support import client_of, emit


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``keys`` and its actions on the top-level subparsers."""
    keys = sub.add_parser("keys", help="API keys (needs an admin key)")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="create a key (shown once)")
    create.add_argument("name", help="who or what the key is for")
    create.add_argument("--admin", action="store_true",
                        help="an admin key (may manage keys); default: a user key")
    create.set_defaults(func=cmd_create)
    listing = actions.add_parser("list", parents=[common], help="list keys (never the keys)")
    listing.set_defaults(func=cmd_list)
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_revoke)


def cmd_create(args: argparse.Namespace) -> int:
    key = client_of(args).create_key(args.name, "admin" if args.admin else "user")
    emit(args, key, f"{key['key']}\n(key id {key['key_id']}, role {key['role']}; "
                    "shown only now: store it as FSNODE_API_KEY)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    keys = client_of(args).list_keys()
    lines = [f"{k['key_id']}  {k['role']:<5}  {_when(k['created_at'])}  "
             f"{'revoked ' + _when(k['revoked_at']) if k.get('revoked_at') else 'active':<27}  "
             f"{k['name']}" for k in keys]
    emit(args, {"keys": keys}, "\n".join(lines) or "no keys")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    key = client_of(args).revoke_key(args.key_id)
    emit(args, key, f"revoked {key['key_id']} ({key['name']})")
    return 0


def _when(unix: int) -> str:
    return datetime.datetime.fromtimestamp(int(unix), datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
