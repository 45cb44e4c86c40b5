"""The bad-input table of ``test_control_plane_bad_input``: one row a bad request and
the status and error code it must get, aimed at what the test seeds (``Seeded``)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fsnode_core.folder_tokens import mint_folder_token
from fsnode_core.signing import SharePolicy, ShareSigner, parse_keyring

from tests.integration.control_plane_helpers import (
    CHUNK,
    ip_san,
    make_csr,
    node_auth,
    register_body,
)

ID_X = "0123456789abcdef" * 2  # well-formed, names nothing


@dataclass(frozen=True)
class Seeded:
    """What the rows aim at: two nodes, two ready files, shares of the first."""

    stack: Any
    node: dict[str, Any]
    other_node: dict[str, Any]
    file: dict[str, Any]  # upload init answer: file_id, version
    other_file: dict[str, Any]
    share: dict[str, str]  # the query of a valid share of ``file``
    folder: str  # the URL path of a valid folder share of ``file``'s folder: /t/TOKEN/P/
    pending: dict[str, Any]  # an upload started and not completed (new version of file)
    part_etag: str


def _token(key: dict[str, Any]) -> str:
    """A listing token shaped like the real ones (base64url JSON of a key)."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _signer(stack: Any) -> ShareSigner:
    active, keys = parse_keyring(stack.keyring)
    return ShareSigner(active, keys[active])


def _nested(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


@dataclass(frozen=True)
class Row:
    """One bad request and the answer it must get."""

    method: str
    path: Callable[[Seeded], str]
    status: int
    code: str
    body: Callable[[Seeded], Any] = lambda s: None
    headers: Callable[[Seeded], dict[str, str]] = lambda s: {}
    key: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _register(**changes: Any) -> Callable[[Seeded], Any]:
    def body(s: Seeded) -> Any:
        sent = register_body(s.stack, make_csr([ip_san("127.0.0.1")]))
        sent.update(changes)
        return {k: v for k, v in sent.items() if v is not None}

    return body


def _csr(
    factory: Callable[[], str],
    endpoint: str = "https://127.0.0.1:8443",
) -> Callable[[Seeded], Any]:
    return lambda s: register_body(s.stack, factory(), endpoint)


def _share_query(s: Seeded, **changes: str) -> str:
    return urlencode({**s.share, **changes})


def _signed(s: Seeded, file_id: str, expires_in: int) -> str:
    policy = SharePolicy(file_id, int(time.time()) + expires_in)
    return urlencode(_signer(s.stack).sign(policy))


def _folder_token(s: Seeded, prefix: str, expires_in: int) -> str:
    return mint_folder_token(_signer(s.stack), prefix, int(time.time()) + expires_in)


def _t(path: str, status: int, code: str) -> Row:
    """A request under the seeded folder share (its path ends in the folder)."""
    return Row("GET", lambda s: s.folder + path, status, code, key=False)


def _tampered_csr() -> str:
    pem = make_csr([ip_san("127.0.0.1")])
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    broken = der[:-1] + bytes([der[-1] ^ 1])  # flip a bit of the signature
    body = base64.encodebytes(broken).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _ed25519_csr() -> str:
    """A well-formed CSR whose key type the CA rules do not allow (Ed25519)."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([ip_san("127.0.0.1")]), critical=False)
        .sign(ed25519.Ed25519PrivateKey.generate(), None)
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def _complete(parts: Callable[[Seeded], Any]) -> Callable[[Seeded], Any]:
    return lambda s: {"parts": parts(s)}


def _upload_at(path: object) -> Callable[[Seeded], Any]:
    return lambda s: {
        "path": path,
        "size": 1,
        "chunk_sha256": ["a" * 64],
        "part_sha256": ["a" * 64],
    }


# One bad request a row (fmt: off keeps the table a table).
# fmt: off
ROWS: dict[str, Row] = {
    # Registration
    "register-no-join-token": Row("POST", lambda s: "/nodes/register", 401, "unauthorized",
                                  _register(join_token=None), key=False),
    "register-wrong-join-token": Row("POST", lambda s: "/nodes/register", 401, "unauthorized",
                                     _register(join_token=secrets.token_urlsafe(32)),
                                     key=False),
    "register-join-token-not-text": Row("POST", lambda s: "/nodes/register", 401,
                                        "unauthorized", _register(join_token=["x"]),
                                        key=False),
    "csr-other-host": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                          _csr(lambda: make_csr([ip_san("10.0.0.9")])), key=False),
    "csr-wildcard": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                        _csr(lambda: make_csr([x509.DNSName("*.example.net")]),
                             "https://edge.example.net:443"), key=False),
    "csr-ed25519-key": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                           _csr(_ed25519_csr), key=False),
    "csr-bad-signature": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                             _csr(_tampered_csr), key=False),
    "csr-garbage": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                       _csr(lambda: "garbage" * 10), key=False),
    "csr-not-text": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                        _register(csr={"pem": "x"}), key=False),
    "register-capacity-negative": Row("POST", lambda s: "/nodes/register", 400,
                                      "invalid_input", _register(capacity_bytes=-1),
                                      key=False),
    "register-lat-out-of-range": Row("POST", lambda s: "/nodes/register", 400,
                                     "invalid_input", _register(lat=91.0), key=False),
    # Node credentials
    "heartbeat-other-nodes-credential": Row(
        "POST", lambda s: f"/nodes/{s.node['node_id']}/heartbeat", 401, "unauthorized",
        lambda s: {"used_bytes": 5, "free_bytes": 5, "capacity_bytes": 10, "load": 9.0},
        lambda s: node_auth(s.other_node), key=False),
    "heartbeat-no-credential": Row(
        "POST", lambda s: f"/nodes/{s.node['node_id']}/heartbeat", 401, "unauthorized",
        lambda s: {"used_bytes": 5, "free_bytes": 5, "capacity_bytes": 10, "load": 9.0},
        key=False),
    "heartbeat-bad-hot-file": Row(
        "POST", lambda s: f"/nodes/{s.node['node_id']}/heartbeat", 400, "invalid_input",
        lambda s: {"used_bytes": 5, "free_bytes": 5, "capacity_bytes": 10, "load": 1.0,
                   "hot_files": ["../../etc"]}, lambda s: node_auth(s.node), key=False),
    "renew-other-nodes-credential": Row(
        "POST", lambda s: f"/nodes/{s.node['node_id']}/renew", 401, "unauthorized",
        lambda s: {"csr": make_csr([ip_san("127.0.0.1")])},
        lambda s: node_auth(s.other_node), key=False),
    # Bodies
    "body-not-json": Row("POST", lambda s: "/files", 400, "invalid_input",
                         lambda s: b"{not json"),
    "body-deeply-nested": Row("POST", lambda s: "/files", 400, "invalid_input",
                              lambda s: _nested(100_000)),
    "body-lone-surrogate": Row("POST", lambda s: "/files", 400, "invalid_input",
                               lambda s: b'{"name": "\\ud800", "size": 1, "content_type": '
                                         b'"t", "chunk_sha256": ["' + b"a" * 64 + b'"]}'),
    "body-not-utf8": Row("POST", lambda s: "/files", 400, "invalid_input",
                         lambda s: b'{"name": "\xff\xfe"}'),
    "body-nan": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                    _register(lat=float("nan")), key=False),
    "body-array": Row("POST", lambda s: "/files/import", 400, "invalid_input",
                      lambda s: b"[]"),
    "body-empty": Row("POST", lambda s: f"/files/{ID_X}/share", 400, "invalid_input",
                      lambda s: b""),
    "body-oversized": Row("POST", lambda s: f"/files/{ID_X}/share", 413, "payload_too_large",
                          lambda s: b'{"name": "' + b"x" * (1024 * 1024) + b'"}'),
    # Upload init declares every hash: it takes up to 4 MiB.
    "body-oversized-init": Row("POST", lambda s: "/files", 413, "payload_too_large",
                               lambda s: b'{"name": "' + b"x" * (4 * 1024 * 1024) + b'"}'),
    "content-type-text": Row("POST", lambda s: "/files", 415, "unsupported_media_type",
                             lambda s: b"{}", lambda s: {"content-type": "text/plain"}),
    "content-type-form": Row("POST", lambda s: "/nodes/register", 415,
                             "unsupported_media_type", lambda s: b"a=b",
                             lambda s: {"content-type": "application/x-www-form-urlencoded"},
                             key=False),
    "content-type-header-injection": Row(
        "POST", lambda s: "/files", 400, "invalid_input",
        lambda s: {"path": "x", "size": 1, "content_type": "video/mp4\r\nx-amz-acl: public",
                   "chunk_sha256": ["a" * 64]}),
    # Uploads
    "upload-chunk-count-wrong": Row(
        "POST", lambda s: "/files", 400, "invalid_input",
        lambda s: {"path": "x", "size": 3 * CHUNK, "content_type": "t",
                   "chunk_sha256": ["a" * 64]}),
    "upload-size-too-big": Row(
        "POST", lambda s: "/files", 400, "invalid_input",
        lambda s: {"path": "x", "size": 6 * 1024**4, "content_type": "t",
                   "chunk_sha256": []}),
    **{f"upload-path-{name}": Row(
        "POST", lambda s: "/files", 400, "invalid_input",
        _upload_at(path))
       for name, path in (("dot-dot", "a/../b"), ("dot", "./a"), ("double-slash", "a//b"),
                          ("leading-slash", "/a"), ("trailing-slash", "a/"),
                          ("nul", "a\x00b"), ("newline", "a\nb"), ("backslash", "a\\b"),
                          ("c1-control", "a\x85b"), ("empty", ""), ("too-long", "a" * 901),
                          ("not-text", 7), ("missing", None))},
    "upload-path-of-another-file": Row(
        "POST", lambda s: "/files", 409, "conflict",
        lambda s: {"file_id": s.file["file_id"], "path": "somewhere/else", "size": 1,
                   "chunk_sha256": ["a" * 64], "part_sha256": ["a" * 64]}),
    "complete-missing-part": Row("POST", lambda s: f"/files/{s.file['file_id']}/complete",
                                 400, "invalid_input", _complete(lambda s: [])),
    "complete-parts-out-of-order": Row(
        "POST", lambda s: f"/files/{s.file['file_id']}/complete", 400, "invalid_input",
        _complete(lambda s: [{"part_number": 2, "etag": s.part_etag}])),
    "complete-part-number-true": Row(
        "POST", lambda s: f"/files/{s.file['file_id']}/complete", 400, "invalid_input",
        _complete(lambda s: [{"part_number": True, "etag": s.part_etag}])),
    "complete-unknown-file": Row("POST", lambda s: f"/files/{ID_X}/complete", 404,
                                 "not_found", _complete(lambda s: [])),
    # Ids
    "id-path-trick": Row("GET", lambda s: "/files/..%2F..%2Fetc%2Fpasswd", 400,
                         "invalid_input"),
    "id-uppercase": Row("GET", lambda s: f"/files/{ID_X.upper()}", 400, "invalid_input"),
    "id-overlong": Row("GET", lambda s: f"/files/{'a' * 33}", 400, "invalid_input"),
    "id-very-long": Row("GET", lambda s: f"/files/{'a' * 5000}/plan", 400, "invalid_input"),
    "id-unknown-file": Row("GET", lambda s: f"/files/{ID_X}", 404, "not_found"),
    "id-unknown-plan": Row("GET", lambda s: f"/files/{ID_X}/plan", 404, "not_found"),
    "id-unknown-share": Row("POST", lambda s: f"/files/{ID_X}/share", 404, "not_found",
                            lambda s: {"ttl_seconds": 60}),
    "id-unknown-delete": Row("DELETE", lambda s: f"/files/{ID_X}", 404, "not_found"),
    "id-unknown-drain": Row("POST", lambda s: f"/nodes/{ID_X}/drain", 404, "not_found"),
    "id-unknown-node-heartbeat": Row(
        "POST", lambda s: f"/nodes/{ID_X}/heartbeat", 401, "unauthorized",
        lambda s: {"used_bytes": 0, "free_bytes": 0, "capacity_bytes": 0, "load": 0.0},
        lambda s: node_auth(s.node), key=False),
    "id-unknown-work": Row("POST", lambda s: f"/nodes/{s.node['node_id']}/work/{ID_X}",
                           404, "not_found", lambda s: {"ok": True},
                           lambda s: node_auth(s.node), key=False),
    "query-limit-not-a-number": Row("GET", lambda s: "/files?limit=1_0", 400,
                                    "invalid_input"),
    "query-forged-next-token": Row("GET", lambda s: "/files?next_token=eyJhIjogMX0=", 400,
                                   "invalid_input"),
    "query-next-token-non-string-key": Row(
        "GET", lambda s: "/files?next_token=" + _token({"pk": {"S": 1}, "sk": {"S": "meta"},
                                                        "list_pk": {"S": "files"},
                                                        "list_sk": {"S": "x"}}),
        400, "invalid_input"),
    "query-offset-huge": Row("GET", lambda s: f"/files/{s.file['file_id']}/plan?offset="
                             + "9" * 30, 400, "invalid_input"),
    # Share URLs
    "share-forged-signature": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(
            s, sig=("B" if s.share["sig"][0] == "A" else "A") + s.share["sig"][1:]),
        403, "forbidden", key=False),
    "share-extended-expiry": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(
            s, exp=str(int(s.share["exp"]) + 3600)), 403, "forbidden", key=False),
    "share-expired": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?"
        + _signed(s, s.file["file_id"], -5), 403, "forbidden", key=False),
    "share-moved-to-another-file": Row(
        "GET", lambda s: f"/s/{s.other_file['file_id']}?" + _share_query(s),
        403, "forbidden", key=False),
    "share-pinned-to-another-version": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(
            s, v=s.other_file["version"]), 410, "gone", key=False),
    "share-pin-malformed": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(s, v="../x"),
        403, "forbidden", key=False),
    # A repeated query parameter is refused before any route (canonical requests)
    "share-repeated-parameter": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(s) + f"&exp={s.share['exp']}",
        400, "invalid_input", key=False),
    "share-repeated-pin": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(s)
        + f"&v={s.file['version']}&v={s.file['version']}", 400, "invalid_input", key=False),
    "share-undefined-parameter": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(s) + "&pfx=bad",
        403, "forbidden", key=False),
    "share-leading-zero": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(s, exp="0" + s.share["exp"]),
        403, "forbidden", key=False),
    "share-padded-signature": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(s, sig=s.share["sig"] + "="),
        403, "forbidden", key=False),
    "share-unknown-key-id": Row(
        "GET", lambda s: f"/s/{s.file['file_id']}?" + _share_query(s, kid="k9"),
        403, "forbidden", key=False),
    "share-no-signature": Row("GET", lambda s: f"/s/{s.file['file_id']}?v=1&exp=9", 403,
                              "forbidden", key=False),
    "share-path-trick": Row("GET", lambda s: "/s/..%2Fetc?" + _share_query(s), 400,
                            "invalid_input", key=False),
    # Folder shares (#15.2): the token covers its folder, by whole segments, nothing else
    "folder-dot-dot": _t("../secret.bin", 400, "invalid_input"),
    "folder-dot-dot-encoded": _t("%2e%2e/secret.bin", 400, "invalid_input"),
    "folder-dot-dot-mixed-case": _t("%2E%2e/secret.bin", 400, "invalid_input"),
    "folder-dot": _t("./first.bin", 400, "invalid_input"),
    "folder-dot-encoded": _t("%2e/first.bin", 400, "invalid_input"),
    "folder-double-slash": _t("x//first.bin", 400, "invalid_input"),
    "folder-nul": _t("first%00.bin", 400, "invalid_input"),
    "folder-control": _t("first%0a.bin", 400, "invalid_input"),
    "folder-encoded-slash": _t("sub%2Ffirst.bin", 400, "invalid_input"),
    "folder-encoded-backslash": _t("sub%5Cfirst.bin", 400, "invalid_input"),
    "folder-bad-escape": _t("first%zz.bin", 400, "invalid_input"),
    "folder-not-utf8": _t("first%ff.bin", 400, "invalid_input"),
    "folder-escape-upwards": _t("../../other/first.bin", 400, "invalid_input"),
    "folder-outside": Row(
        "GET", lambda s: s.folder.rsplit("/", 3)[0] + "/other/first.bin", 403, "forbidden",
        key=False),
    "folder-sibling-with-longer-name": Row(
        "GET", lambda s: s.folder.rstrip("/") + "2/first.bin", 403, "forbidden", key=False),
    "folder-parent-itself": Row(
        "GET", lambda s: s.folder.rstrip("/"), 403, "forbidden", key=False),
    "folder-forged-token": Row(
        "GET", lambda s: s.folder.replace("/t/", "/t/A", 1), 403, "forbidden", key=False),
    "folder-token-for-a-sibling": Row(
        "GET", lambda s: "/t/" + _folder_token(s, "elsewhere/", 600) + "/"
        + s.folder.split("/", 3)[3] + "first.bin", 403, "forbidden", key=False),
    "folder-expired-token": Row(
        "GET", lambda s: "/t/" + _folder_token(s, s.folder.split("/", 3)[3], -5) + "/"
        + s.folder.split("/", 3)[3] + "first.bin", 403, "forbidden", key=False),
    "folder-share-not-a-folder": Row("POST", lambda s: "/shares", 400, "invalid_input",
                                     lambda s: {"prefix": "media", "ttl_seconds": 60}),
    "folder-share-dot-dot": Row("POST", lambda s: "/shares", 400, "invalid_input",
                                lambda s: {"prefix": "a/../", "ttl_seconds": 60}),
    "folder-share-bad-ttl": Row("POST", lambda s: "/shares", 400, "invalid_input",
                                lambda s: {"prefix": "a/", "ttl_seconds": 0}),
    "folder-share-bad-ip": Row("POST", lambda s: "/shares", 400, "invalid_input",
                               lambda s: {"prefix": "a/", "ttl_seconds": 60, "ip": "x"}),
    "folder-share-no-key": Row("POST", lambda s: "/shares", 401, "unauthorized",
                               lambda s: {"prefix": "a/", "ttl_seconds": 60}, key=False),
    "file-share-with-prefix": Row("POST", lambda s: f"/files/{s.file['file_id']}/share", 400,
                                  "invalid_input",
                                  lambda s: {"ttl_seconds": 60, "prefix": "x/"}),
    "listing-prefix-control": Row("GET", lambda s: "/files?prefix=a%00", 400,
                                  "invalid_input"),
    "rehash-unknown-file": Row("POST", lambda s: f"/files/{ID_X}/rehash", 404, "not_found"),
    "rehash-no-key": Row("POST", lambda s: f"/files/{s.file['file_id']}/rehash", 401,
                         "unauthorized", key=False),
    # Management auth
    "managed-no-api-key": Row("GET", lambda s: "/files", 401, "unauthorized", key=False),
    "managed-wrong-api-key": Row("DELETE", lambda s: f"/files/{s.file['file_id']}", 401,
                                 "unauthorized", headers=lambda s: {"authorization": "Bearer nope"},
                                 key=False),
    "import-foreign-bucket": Row("POST", lambda s: "/files/import", 403, "forbidden",
                                 lambda s: {"bucket": "someone-else", "key": "k"}),
    "import-etag-header-injection": Row(
        "POST", lambda s: "/files/import", 400, "invalid_input",
        lambda s: {"bucket": s.stack.env["FSNODE_BUCKET"], "key": "k",
                   "etag": "abc\r\nx: y"}),
    "import-key-control-characters": Row(
        "POST", lambda s: "/files/import", 400, "invalid_input",
        lambda s: {"bucket": s.stack.env["FSNODE_BUCKET"], "key": "a\x00b"}),
    # Canonical requests (#17.7): one spelling per request
    "query-repeated-parameter": Row("GET", lambda s: "/files?limit=1&limit=1", 400,
                                    "invalid_input"),
    "query-control-character": Row("GET", lambda s: "/files?limit=1&note=a%0Ab", 400,
                                   "invalid_input"),
    "body-utf-16": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                       lambda s: json.dumps(_register()(s)).encode("utf-16"), key=False),
    "body-utf-32": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                       lambda s: json.dumps(_register()(s)).encode("utf-32"), key=False),
    "body-utf-8-bom": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                          lambda s: b"\xef\xbb\xbf" + json.dumps(_register()(s)).encode(),
                          key=False),
    "body-invalid-utf-8": Row("POST", lambda s: "/shares", 400, "invalid_input",
                              lambda s: b'{"prefix": "a\xff/", "ttl_seconds": 60}'),
    "body-encoded-surrogate": Row("POST", lambda s: "/shares", 400, "invalid_input",
                                  lambda s: b'{"prefix": "\xed\xa0\x80/", "ttl_seconds": 60}'),
    "register-region-control": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                                   _register(region="eu\nwest"), key=False),
    "register-region-escape": Row("POST", lambda s: "/nodes/register", 400, "invalid_input",
                                  _register(region="eu\x1b[2Jwest"), key=False),
    "body-control-in-a-field-name": Row(
        "POST", lambda s: "/shares", 400, "invalid_input",
        lambda s: {"prefix": "a/", "ttl_seconds": 60, "x\u0001": 1}),
    "api-key-name-control": Row("POST", lambda s: "/keys", 400, "invalid_input",
                                lambda s: {"name": "ops\u0007", "role": "user"}),
}
# fmt: on
