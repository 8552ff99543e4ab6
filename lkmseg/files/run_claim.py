"""Naming and claiming run folders: one command at a time writes a run folder.

A new run claims its folder atomically (``mkdir``, or an empty folder whose lock it wins) and
holds the folder's lock (``lkmseg.files.lock``) until it ends; ``--resume`` takes the same
lock on the existing folder. A second command on a held folder exits 2 naming the PID that
holds it, before it touches anything in the folder.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.files.lock import FOLDER_LOCK, FolderBusy, Lock, describe_holder, holder, lock_folder
from lkmseg.fsutil import explain_os_error


@dataclass
class RunClaim:
    """A run folder this process holds: ``release()`` when done; ``abandon()`` when the start
    failed (a folder it made and left empty is removed)."""

    path: Path
    lock: Lock
    new: bool  # made (or taken empty) by this claim

    def release(self) -> None:
        self.lock.release()

    def abandon(self) -> None:
        empty = self.new and _only_lock(self.path)
        self.lock.release()
        if empty:
            with contextlib.suppress(OSError):
                self.path.rmdir()


def default_run_name(cfg: RunConfig) -> str:
    """``BLOCK_HxW_YYYYmmdd-HHMMSS``."""
    return f"{cfg.model.block}_{cfg.size[0]}x{cfg.size[1]}_{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_name(name: str) -> None:
    if not name.strip() or Path(name).name != name or name in (".", ".."):
        raise UserError(f"--name {name!r}: give a plain folder name (no '/'), e.g. --name r1")


def _only_lock(folder: Path) -> bool:
    try:
        return all(p.name == FOLDER_LOCK for p in folder.iterdir())
    except OSError:
        return False


def _try_claim(d: Path, purpose: str) -> Lock | None:
    """``d``'s lock if ``d`` is (now) an empty folder this process holds; None if ``d`` has
    files (or is a file). FolderBusy when another process holds it."""
    for _ in range(10):  # a folder removed by a failed start between our mkdir and our lock
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                return None
        except OSError as e:
            raise explain_os_error(d, e) from e
        try:
            lock = lock_folder(d, purpose)
        except UserError as e:
            if isinstance(e.__cause__, FileNotFoundError):
                continue
            raise
        if _only_lock(d):
            return lock
        lock.release()
        return None
    raise UserError(f"{d}: another process keeps making and removing this folder; "
                    "choose another --name")


def claim_new_run(out: str | Path, name: str | None, default: str,
                  purpose: str = "train") -> RunClaim:
    """Claim ``OUT/NAME`` (``name`` given: exit 2 if it exists or is held) or the first free
    ``OUT/DEFAULT``, ``OUT/DEFAULT-2``, ... (no name)."""
    out = Path(out)
    if name is not None:
        check_run_name(name)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise explain_os_error(out, e) from e
    base = name or default
    for i in itertools.count(1):
        d = out / (base if i == 1 else f"{base}-{i}")
        try:
            lock = _try_claim(d, purpose)
        except FolderBusy:
            if name is None:
                continue
            raise FolderBusy(f"{d}: run folder in use by "
                             f"{describe_holder(holder(d / FOLDER_LOCK))}; choose another "
                             "--name") from None
        if lock is not None:
            return RunClaim(d, lock, new=True)
        if name is not None:
            raise UserError(f"{d}: run folder exists; choose another --name or "
                            f"continue it with --resume {d}")
    raise AssertionError("unreachable")


def claim_run(run_dir: str | Path, purpose: str) -> RunClaim:
    """Hold an existing run folder (``--resume``; export): FolderBusy naming the PID of the
    process that holds it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run folder not found; train one with `lkmseg train`")
    return RunClaim(run_dir, lock_folder(run_dir, purpose), new=False)
