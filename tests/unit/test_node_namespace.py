"""The fleet's namespace (issue 17.1): which endpoint hosts the CA may issue for, and
the setting that names them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fsnode_core.errors import Forbidden

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
from chalicelib.attestation import assumed_role_prefix
from chalicelib.pki import check_namespace, parse_endpoint
from fsnode_core.control_plane_settings import ControlPlaneOptions
from fsnode_core.settings_env import SettingError

NAMESPACE = (".compute.amazonaws.com", ".edges.example.com", "10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize(
    "url",
    [
        "https://ec2-3-4-5-6.compute.amazonaws.com:443",
        "https://a.edges.example.com:8443",
        "https://10.1.2.3:443",
        "https://[fd00::1]:443",
    ],
)
def test_hosts_inside_the_namespace_are_accepted(url: str) -> None:
    check_namespace(parse_endpoint(url), NAMESPACE)


@pytest.mark.parametrize(
    "url",
    [
        "https://www.example.com:443",  # another name
        "https://8.8.8.8:443",  # another address
        "https://edges.example.com:443",  # the suffix's own apex is not under it
        "https://evilcompute.amazonaws.com:443",  # a suffix is matched at a label boundary
        "https://[::ffff:10.0.0.1]:443",  # an IPv6 address never matches an IPv4 network
        "https://11.0.0.1:443",
    ],
)
def test_hosts_outside_the_namespace_are_refused(url: str) -> None:
    with pytest.raises(Forbidden) as refused:
        check_namespace(parse_endpoint(url), NAMESPACE)
    assert refused.value.details["field"] == "endpoint"


def test_an_empty_namespace_refuses_everything() -> None:
    with pytest.raises(Forbidden):
        check_namespace(parse_endpoint("https://127.0.0.1:443"), ())


def test_the_setting_takes_suffixes_and_networks_only() -> None:
    values = ControlPlaneOptions.values_from_env(
        {"FSNODE_NODE_NAMESPACE": " .Edges.Example.com , 127.0.0.0/8,"}
    )
    assert ControlPlaneOptions(**values).node_namespace == (".edges.example.com", "127.0.0.0/8")
    for bad in ("example.com", "300.0.0.0/8", "10.0.0.0/33"):
        with pytest.raises(SettingError, match="node_namespace"):
            ControlPlaneOptions(node_namespace=(bad,))


def test_a_role_arn_names_its_sessions() -> None:
    assert (
        assumed_role_prefix("arn:aws:iam::123456789012:role/path/to/fsnode-edge")
        == "arn:aws:sts::123456789012:assumed-role/fsnode-edge/"
    )
