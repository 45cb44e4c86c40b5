"""``fsnode local up`` settings flags: ``--env NAME=VALUE`` and ``--edge-env-for edge-N:...``."""

from __future__ import annotations

import pytest

from fsnode.commands import local
from fsnode.settings import SettingsError


def test_settings_flags_parse() -> None:
    assert local._setting("FSNODE_WARM_TIMEOUT=5") == ("FSNODE_WARM_TIMEOUT", "5")
    assert local._setting("A=b=c") == ("A", "b=c")
    flags = ["edge-3:FSNODE_FAULT_WARM_FAILURES=3", "edge-3:X=", "edge-1:Y=1"]
    assert local._edge_settings(flags) == {
        "edge-3": {"FSNODE_FAULT_WARM_FAILURES": "3", "X": ""},
        "edge-1": {"Y": "1"},
    }


@pytest.mark.parametrize("raw", ["FSNODE_X", "=1"])
def test_bad_setting_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError):
        local._setting(raw)


@pytest.mark.parametrize("raw", ["FSNODE_X=1", "edge-2:FSNODE_X", "api:X=1"])
def test_bad_edge_setting_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError):
        local._edge_settings([raw])
