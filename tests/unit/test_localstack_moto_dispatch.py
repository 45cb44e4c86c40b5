"""The local stack's moto dispatch patch: each host's backend is looked up once, and it is
the backend moto's own lookup gives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from fsnode.localstack import moto_dispatch

HOSTS = (
    "s3.us-east-1.amazonaws.com",
    "dynamodb",
    "states.us-east-1.amazonaws.com",
    "lambda.eu-west-1.amazonaws.com",
    "secretsmanager.us-east-1.amazonaws.com",
    "acm-pca.us-east-1.amazonaws.com",
    "moto_api",
    "nothing.example",
    None,
)


@pytest.fixture
def dispatcher() -> Iterator[DomainDispatcherApplication]:
    yield DomainDispatcherApplication(create_backend_app)
    moto_dispatch.uninstall()


def test_each_host_resolves_to_the_backend_moto_would_pick(
    dispatcher: DomainDispatcherApplication,
) -> None:
    expected = {host: dispatcher.get_backend_for_host(host) for host in HOSTS}
    moto_dispatch.install()
    for _ in range(2):  # the first call looks it up, the second is kept
        assert {host: dispatcher.get_backend_for_host(host) for host in HOSTS} == expected
    assert expected["s3.us-east-1.amazonaws.com"] == "s3"
    assert expected["nothing.example"] is None


def test_a_known_host_no_longer_lists_motos_package(
    dispatcher: DomainDispatcherApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_dispatch.install()
    dispatcher.get_backend_for_host("s3.us-east-1.amazonaws.com")
    listed: list[Any] = []
    real_listdir = os.listdir

    def counting_listdir(path: Any) -> list[str]:
        listed.append(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", counting_listdir)
    for _ in range(50):
        assert dispatcher.get_backend_for_host("s3.us-east-1.amazonaws.com") == "s3"
    assert listed == []
    # A host not seen yet is still looked up by moto (once).
    dispatcher.get_backend_for_host("sts.us-east-1.amazonaws.com")
    assert len(listed) == 1


def test_uninstall_puts_motos_lookup_back(dispatcher: DomainDispatcherApplication) -> None:
    original = DomainDispatcherApplication.get_backend_for_host
    moto_dispatch.install()
    assert DomainDispatcherApplication.get_backend_for_host is not original
    moto_dispatch.uninstall()
    assert DomainDispatcherApplication.get_backend_for_host is original
