"""Manifests: which files lkmseg wrote into a folder it shares with a user.

An export folder (``RUN/export`` or ``--out DIR``) holds ``manifest.json``; each model folder
of a Triton repository holds ``lkmseg.json``. Each lists the files lkmseg wrote there with
their SHA-256, so that a later lkmseg command replaces or deletes only those — and only while
their content is still what lkmseg wrote (a file the user replaced or edited since is theirs).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from lkmseg import __version__
from lkmseg.fsutil import write_json

EXPORT_MANIFEST = "manifest.json"  # in an export folder
TRITON_MARKER = "lkmseg.json"  # in each model folder of a Triton repository


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digests(folder: Path, names: list[str]) -> dict[str, str]:
    """``{name: sha256}`` of the files ``names`` (relative paths) in ``folder``."""
    return {n: file_digest(folder / n) for n in sorted(names)}


def write_manifest(path: Path, files: dict[str, str], **extra: object) -> None:
    write_json(path, {"written_by": "lkmseg", "lkmseg_version": __version__,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
                      "files": files})


def read_manifest(path: Path) -> dict | None:
    """The manifest at ``path``, or None when there is none or it is not an lkmseg manifest
    (then nothing in the folder counts as lkmseg's)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("written_by") != "lkmseg" \
            or not isinstance(d.get("files"), dict):
        return None
    return d


def unchanged(folder: Path, name: str, sha256: object) -> bool:
    """True when ``folder/name`` is a plain file whose content is still ``sha256``."""
    p = folder / name
    if not isinstance(sha256, str) or p.is_symlink() or not p.is_file():
        return False
    try:
        return file_digest(p) == sha256
    except OSError:
        return False
