"""Which parts of a Triton model repository lkmseg may replace, and writing them.

Each model folder lkmseg writes holds ``lkmseg.json``: the run it came from and the SHA-256 of
every file lkmseg put there; ``REPO/.lkmseg.json`` does the same for ``REPO/README.md``. A
later ``--triton`` export replaces a folder only when it is this run's and nobody changed its
files since; anything else — a folder or README lkmseg did not write, one edited since, the
model of another run that maps to the same name — is refused unless ``--force``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lkmseg.errors import UserError
from lkmseg.files.manifest import TRITON_MARKER, digests, read_manifest, unchanged, write_manifest

README, REPO_MARKER = "README.md", ".lkmseg.json"
LEGACY_README = "# Triton model repository (written by `lkmseg export RUN --triton REPO`)"
FORCE = "pass --force to replace it"


def _changed(folder: Path, files: dict) -> str | None:
    for rel, sha in files.items():
        if not isinstance(rel, str) or ".." in Path(rel).parts or Path(rel).is_absolute():
            return rel if isinstance(rel, str) else "?"
        if not unchanged(folder, rel, sha):
            return rel
    return None


def folder_owner(folder: Path, run_id: str) -> dict | None:
    """The marker of ``folder`` when lkmseg may update it in place (it is this run's model and
    unchanged), None when the folder does not exist; else UserError naming the folder and
    ``--force``."""
    if not folder.exists():
        return None
    if folder.is_symlink() or not folder.is_dir():
        raise UserError(f"--triton: {folder} is not a folder lkmseg wrote; {FORCE}")
    marker = read_manifest(folder / TRITON_MARKER)
    if marker is None:
        raise UserError(f"--triton: {folder} was not written by lkmseg (no {TRITON_MARKER}); "
                        f"{FORCE}, or name this model with --triton-name")
    if marker.get("run") != run_id:
        raise UserError(f"--triton: {folder} holds the model of another run "
                        f"({marker.get('run')}); name this one with --triton-name NAME, or "
                        f"{FORCE}")
    changed = _changed(folder, marker["files"])
    if changed is not None:
        raise UserError(f"--triton: {folder / changed} was changed since lkmseg wrote it; "
                        f"{FORCE}")
    return marker


def check_readme(repo: Path) -> None:
    """UserError unless REPO/README.md is absent or lkmseg's own, unchanged."""
    path = repo / README
    if not path.exists():
        return
    marker = read_manifest(repo / REPO_MARKER)
    if marker is not None:
        if _changed(repo, {README: marker["files"].get(README)}) is None:
            return
        why = "was changed since lkmseg wrote it"
    else:  # a README written before markers existed starts with lkmseg's title
        try:
            with open(path, errors="replace") as f:
                if f.readline().rstrip("\n") == LEGACY_README:
                    return
        except OSError:
            pass
        why = "was not written by lkmseg"
    raise UserError(f"--triton: {path} {why}; {FORCE}")


def mark_readme(repo: Path) -> None:
    write_manifest(repo / REPO_MARKER, digests(repo, [README]))


def write_folder(folder: Path, files: dict[str, bytes | Path], owner: dict | None,
                 replace: bool, run_id: str, export_dir: Path) -> None:
    """Write ``files`` (relative path -> bytes or a file to copy) into ``folder`` and its marker.
    ``owner``: the folder's marker (lkmseg's files there that are not rewritten are removed;
    other files are kept); ``replace``: the folder is not lkmseg's, move it aside first."""
    aside = None
    if replace and folder.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.replaced-", dir=folder.parent))
        os.replace(folder, aside / folder.name)
    try:
        _write(folder, files)
    except BaseException:
        if aside is not None:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(aside / folder.name, folder)
            aside.rmdir()
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    for rel in (owner or {}).get("files", {}):
        if rel not in files:
            (folder / rel).unlink(missing_ok=True)
    write_manifest(folder / TRITON_MARKER, digests(folder, list(files)), run=run_id,
                   export=str(export_dir.resolve()))


def _write(folder: Path, files: dict[str, bytes | Path]) -> None:
    from lkmseg.fsutil import atomic_path, write_bytes

    for rel, src in files.items():  # config.pbtxt comes last: the model files are there
        if isinstance(src, bytes):
            write_bytes(folder / rel, src)
        else:
            with atomic_path(folder / rel) as tmp:
                shutil.copyfile(src, tmp)
