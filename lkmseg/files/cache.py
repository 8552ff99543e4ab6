"""lkmseg's cache folder (``$LKMSEG_CACHE``, default ``~/.cache/lkmseg``) and its small JSON
records (measured choices: ``autotune.json``, ``auto/*.json``).

A cache only saves work: one that cannot be written is said once (a warning on stderr) and
the command goes on. Records are updated under a lock (``lkmseg.files.lock.locked``) and
written atomically, so two processes measuring at once lose neither's answer.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lkmseg.errors import UserError
from lkmseg.files.lock import locked
from lkmseg.fsutil import write_json

_warned: set[str] = set()


def cache_root() -> Path:
    """``$LKMSEG_CACHE`` (unset or empty: ``~/.cache/lkmseg``)."""
    return Path(os.environ.get("LKMSEG_CACHE") or Path.home() / ".cache" / "lkmseg")


def warn_unwritable(path: str | Path, why: str) -> None:
    """Say once per process that the cache cannot be written (the command goes on)."""
    if "cache" in _warned:
        return
    _warned.add("cache")
    print(f"warning: cannot write the cache at {path} ({why}); going on without it (set "
          "LKMSEG_CACHE to a writable folder to keep measurements)", file=sys.stderr)


def read_json(path: str | Path) -> dict:
    """The JSON object in ``path``; {} when it is missing or damaged (only a cache)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_json(path: str | Path, change: Callable[[dict], dict]) -> bool:
    """Read the record ``path``, apply ``change`` and write the result atomically, all under
    the file's lock. False (after a warning) when the cache cannot be written."""
    path = Path(path)
    with locked(path):
        data = change(read_json(path))
        try:
            write_json(path, data)
        except UserError as e:  # read-only or full: the next run measures again
            warn_unwritable(path, getattr(e.__cause__, "strerror", None) or str(e))
            return False
    return True
