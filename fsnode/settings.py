"""Where the command line finds the control plane: flags, environment, or a local stack."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fsnode.localstack.stack import STACK_FILE, StackInfo


class SettingsError(Exception):
    """No control plane could be found from flags, environment or a local stack."""


def fsnode_home() -> Path:
    return Path(os.environ.get("FSNODE_HOME", Path.home() / ".fsnode"))


def default_state_dir() -> Path:
    return fsnode_home() / "local"


def remember_stack(state_dir: Path) -> None:
    """Record ``state_dir`` as the last local stack, for commands given no settings."""
    home = fsnode_home()
    home.mkdir(parents=True, exist_ok=True)
    (home / "last-stack").write_text(str(state_dir.resolve()) + "\n")


def last_stack_dir() -> Path | None:
    pointer = fsnode_home() / "last-stack"
    if not pointer.exists():
        return None
    return Path(pointer.read_text().strip())


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How a client reaches the control plane and trusts the edges."""

    api_url: str
    api_key: str | None
    ca_cert: str | None

    @classmethod
    def resolve(
        cls,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        ca_cert: str | None = None,
        state_dir: Path | None = None,
    ) -> ClientSettings:
        """Flags win over the environment, which wins over a local stack's state file."""
        api_url = api_url or os.environ.get("FSNODE_API_URL")
        api_key = api_key or os.environ.get("FSNODE_API_KEY")
        ca_cert = ca_cert or os.environ.get("FSNODE_CA_CERT")
        if api_url and state_dir is None:
            return cls(api_url=api_url.rstrip("/"), api_key=api_key, ca_cert=ca_cert)
        stack_dir = state_dir or last_stack_dir()
        if stack_dir is None or not (stack_dir / STACK_FILE).exists():
            raise SettingsError(
                "no control plane: pass --api-url, set FSNODE_API_URL, or start a local "
                "stack with 'fsnode local up'"
            )
        info = StackInfo.load(stack_dir)
        return cls(
            api_url=(api_url or info.api).rstrip("/"),
            api_key=api_key or info.api_key,
            ca_cert=ca_cert or info.ca_cert,
        )
