"""Parsers for option values shared by several commands (sizes, durations, lists)."""

from __future__ import annotations

import re

from lkmseg.errors import UserError


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """'256' -> (256, 256); '320x480' -> (H=320, W=480)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x×,]\s*(\d+))?\s*", str(text))
    if not m:
        raise UserError(f"{option} {text!r}: use N or HxW, e.g. 256 or 320x480")
    h = int(m.group(1))
    w = int(m.group(2) or h)
    if not (16 <= h <= 8192 and 16 <= w <= 8192):
        raise UserError(f"{option} {text!r}: height and width must be between 16 and 8192")
    return h, w


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """'90' / '90s' / '10m' / '1h30m' / '1.5h' -> seconds."""
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        secs = float(s)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", s)
        if not parts or "".join(a + b for a, b in parts) != s.replace(" ", ""):
            raise UserError(f"{option} {text!r}: use seconds or a duration like 90s, 10m, 1h30m")
        secs = sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts)
    if secs <= 0:
        raise UserError(f"{option} {text!r}: must be positive")
    return secs


def parse_list(text: str, option: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UserError(f"{option} {text!r}: give a comma-separated list")
    return items


def check_finite(value: float, option: str) -> float:
    import math

    if not math.isfinite(value):
        raise UserError(f"{option} {value}: must be a finite number")
    return value


def check_regex(pattern: str, option: str) -> str:
    try:
        re.compile(pattern)
    except re.error as e:
        raise UserError(f"{option} {pattern!r}: not a valid regular expression ({e})") from e
    return pattern
