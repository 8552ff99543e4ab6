"""Triton's ``config.pbtxt`` from a plain description of the model configuration.

With the ``serve`` extra installed, the description is parsed into Triton's own schema
(tritonclient's ``model_config_pb2``, via ``google.protobuf.json_format``: a misspelt field or
enum value fails here, not in the server) and printed by ``google.protobuf.text_format``.
Without it, a small writer prints the same protobuf text format (``fallback_text``).

A description is a dict: scalars, ``Enum`` values (bare identifiers such as ``TYPE_FP32``),
lists (repeated fields), nested dicts (messages) and the ``parameters`` map
(``{key: {"string_value": value}}``, see ``parameters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Config = dict[str, Any]
MAP_FIELDS = ("parameters",)  # the map fields lkmseg writes (the fallback must know them)


@dataclass(frozen=True)
class Enum:
    """An enum value, written without quotes."""

    name: str


def parameters(params: dict[str, str]) -> Config:
    """Triton's ``parameters`` map (string values)."""
    return {"parameters": {k: {"string_value": str(v)} for k, v in params.items()}}


def _schema() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:  # no serve extra: the fallback writer
        return None
    return model_config_pb2


def _plain(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.name
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def to_text(config: Config) -> str:
    """The configuration in protobuf text format (Triton's schema when installed)."""
    pb = _schema()
    if pb is None:
        return fallback_text(config)
    from google.protobuf import json_format, text_format

    msg = json_format.ParseDict(_plain(config), pb.ModelConfig())
    return text_format.MessageToString(msg, as_utf8=True)


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


def _lines(msg: Config, indent: int) -> list[str]:
    pad = "  " * indent
    out = []
    for key, v in msg.items():
        if key in MAP_FIELDS and isinstance(v, dict):  # a map: one entry message per key
            v = [{"key": k, "value": x} for k, x in v.items()]
        if isinstance(v, dict):
            out += [f"{pad}{key} {{", *_lines(v, indent + 1), f"{pad}}}"]
        elif isinstance(v, list) and v and isinstance(v[0], dict):  # repeated messages
            for x in v:
                out += [f"{pad}{key} {{", *_lines(x, indent + 1), f"{pad}}}"]
        elif isinstance(v, list):  # repeated scalars
            out.append(f"{pad}{key}: [{', '.join(_scalar(x) for x in v)}]")
        else:
            out.append(f"{pad}{key}: {_scalar(v)}")
    return out


def fallback_text(config: Config) -> str:
    """The protobuf text format, written without protobuf (when tritonclient is absent)."""
    return "\n".join(_lines(config, 0)) + "\n"
