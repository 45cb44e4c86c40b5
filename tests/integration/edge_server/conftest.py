"""One edge (and its moto S3) for every test file of the package: set up once per
process that runs any of them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.helpers import https_session
from tests.integration.edge_fixtures import EdgeServer, edge_on_moto
from tests.integration.edge_publishing import share_query
from tests.integration.edge_server.served import BUCKET, DATA, publish


@pytest.fixture(scope="package")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with edge_on_moto(tmp_path_factory, BUCKET) as server:
        yield server


@pytest.fixture(scope="package")
def http(edge: EdgeServer) -> Iterator[requests.Session]:
    with https_session(edge.ca_file) as session:
        yield session


@pytest.fixture(params=["https-miss", "https-hit", "http-miss", "http-hit"])
def shared(
    request: pytest.FixtureRequest, edge: EdgeServer, http: requests.Session
) -> tuple[str, dict[str, str]]:
    """A fresh file, cold (miss) or already read once (hit), over HTTPS or plain HTTP
    (the plain listener sends cached bytes with sendfile)."""
    scheme, state = request.param.split("-")
    manifest = publish(edge)
    query = share_query(manifest.file_id, manifest.version)
    base = edge.url if scheme == "https" else edge.plain_url
    url = f"{base}/f/{manifest.file_id}"
    if state == "hit":
        assert http.get(url, params=query).content == DATA
    return url, query
