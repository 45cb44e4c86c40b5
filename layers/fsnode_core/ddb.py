"""Plain Python values to and from DynamoDB's typed attribute maps.

The stores use the low-level client (one client type for every table, easy to point
at moto), so they need this small codec. Numbers travel as strings, which keeps
floats exact without Decimal; ``None`` values are left out rather than stored as NULL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AttributeMap = dict[str, Any]


def to_attr(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(item) for item in value]}
    if isinstance(value, Mapping):
        return {"M": to_attrs(value)}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def to_attrs(values: Mapping[str, Any]) -> AttributeMap:
    """A dict of Python values as a DynamoDB item, dropping ``None`` values."""
    return {key: to_attr(value) for key, value in values.items() if value is not None}


def from_attr(attr: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value as a Python value."""
    ((kind, value),) = attr.items()
    if kind == "N":
        text = str(value)
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind in ("S", "B", "BOOL"):
        return value
    if kind == "NULL":
        return None
    if kind == "L":
        return [from_attr(item) for item in value]
    if kind == "M":
        return from_attrs(value)
    if kind in ("SS", "BS"):
        return sorted(value)
    if kind == "NS":
        return sorted(from_attr({"N": item}) for item in value)
    raise TypeError(f"unknown DynamoDB attribute type {kind}")


def from_attrs(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as a dict of Python values."""
    return {key: from_attr(attr) for key, attr in item.items()}
