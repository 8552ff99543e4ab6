"""The API's forgiving forms of sizes and durations: ints, tuples and "HxW" / "10m" strings."""

from __future__ import annotations

from typing import Any


def size(value: Any) -> tuple[int, int] | None:
    """128, "128", "64x96", (64, 96) -> (H, W); None stays None."""
    from lkmseg.cli.options import parse_size

    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        value = "x".join(str(int(s)) for s in value)
    return parse_size(str(value))


def duration(value: float | str | None, option: str = "time_budget") -> float | None:
    """90, "90s", "10m", "1h" -> seconds; None stays None."""
    from lkmseg.cli.options import parse_duration

    if value is None:
        return None
    return parse_duration(str(value), option)
