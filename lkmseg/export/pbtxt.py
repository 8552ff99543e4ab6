"""A small writer for protobuf text format (Triton's ``config.pbtxt``), no protobuf needed.

A message is a list of ``(field, value)`` pairs, in order; a repeated field is a pair per
element. Values: ``str`` (quoted), ``int``/``float``, ``bool``, ``Enum`` (bare identifier such
as ``TYPE_FP32``), a list of ints (``dims: [3, -1, -1]``) or a nested message (a list of pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Message = list[tuple[str, Any]]


@dataclass(frozen=True)
class Enum:
    """An enum value, written without quotes."""

    name: str


def _scalar(v: Any) -> str:
    if isinstance(v, Enum):
        return v.name
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        esc = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{esc}"'
    raise TypeError(f"cannot write {type(v).__name__} to protobuf text format")


def _lines(msg: Message, indent: int) -> list[str]:
    pad = "  " * indent
    out = []
    for key, v in msg:
        if isinstance(v, list) and v and isinstance(v[0], tuple):  # nested message
            out.append(f"{pad}{key} {{")
            out += _lines(v, indent + 1)
            out.append(f"{pad}}}")
        elif isinstance(v, list):  # packed scalars
            out.append(f"{pad}{key}: [{', '.join(_scalar(x) for x in v)}]")
        else:
            out.append(f"{pad}{key}: {_scalar(v)}")
    return out


def to_text(msg: Message) -> str:
    """The message in protobuf text format."""
    return "\n".join(_lines(msg, 0)) + "\n"


def parameters(params: dict[str, str]) -> Message:
    """Triton's ``parameters`` map (string values) as repeated map entries."""
    return [("parameters", [("key", k), ("value", [("string_value", str(v))])])
            for k, v in params.items()]
