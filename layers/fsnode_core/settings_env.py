"""Reading typed settings from an environment mapping, with errors that name the setting."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A setting that is missing or not valid; ``name`` is the variable (or key) at fault."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name


def required(env: Mapping[str, str], name: str) -> str:
    """The variable's value, stripped; SettingError when it is unset or empty."""
    value = env.get(name, "").strip()
    if not value:
        raise SettingError(name, "must be set")
    return value


def optional(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, stripped; None when it is unset or empty."""
    return env.get(name, "").strip() or None


def integer(env: Mapping[str, str], name: str, default: int) -> int:
    """An integer variable, ``default`` when unset or empty."""
    return _parsed(env, name, default, int, "an integer")


def number(env: Mapping[str, str], name: str, default: float) -> float:
    """A number variable, ``default`` when unset or empty."""
    return _parsed(env, name, default, float, "a number")


def names(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list variable, ``default`` when unset or empty."""
    raw = env.get(name, "")
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    return items or default


def _parsed(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T],
            kind: str) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingError(name, f"must be {kind}, got {raw!r}") from exc
