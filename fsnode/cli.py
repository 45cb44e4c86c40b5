"""The ``fsnode`` command line."""

from __future__ import annotations

import argparse

import requests

from fsnode.api import ApiError
from fsnode.commands import files, keys, local, nodes
from fsnode.commands.support import fail
from fsnode.download import DownloadError
from fsnode.localstack.errors import StackError
from fsnode.settings import SettingsError
from fsnode.uploads import UploadInterrupted

# What a user can cause or fix: the API's answers, settings, the network, a stack that
# will not start, a file they named. Anything else is a bug and keeps its traceback.
CLEAN_ERRORS = (
    ApiError,
    SettingsError,
    DownloadError,
    UploadInterrupted,
    StackError,
    requests.RequestException,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CLEAN_ERRORS as exc:
        fail(args, exc)
        return 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--state-dir", help="a local stack's folder (default: the last one)")
    common.add_argument("--api-url", help="control plane URL (env FSNODE_API_URL)")
    common.add_argument("--api-key", help="API key (env FSNODE_API_KEY)")
    common.add_argument("--ca-cert", help="CA certificate the edges chain to (env FSNODE_CA_CERT)")

    parser = argparse.ArgumentParser(prog="fsnode", description="fsnode: a CDN for S3")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in (local, files, nodes, keys):
        group.add_parser(sub, common)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
