"""Exclusive locks (``fcntl.flock``) so that two lkmseg commands never write one run folder,
or read-modify-write one cache file, at the same time.

A lock is an open file with an flock on it: the kernel drops it when its process exits, however
it exits (a SIGKILL leaves no stale lock, at most an unlocked lock file). The holder writes
who it is (PID, host, what it does, since when) into the file, so that a command refused can
name it.

Run folders: ``lock_folder(folder, "train")`` (no waiting; ``FolderBusy``, exit 2, naming the
holder's PID). Cache files: ``with locked(path):`` (waits its turn on ``PATH.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lkmseg.errors import UserError
from lkmseg.fsutil import explain_os_error

FOLDER_LOCK = ".lkmseg.lock"  # inside a run folder, removed when its holder releases it
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without flock


class FolderBusy(UserError):
    """Another process holds the folder's lock (exit 2; the message names its PID)."""


class Lock:
    """A held lock; ``release()`` (or leaving the ``with``) lets it go."""

    def __init__(self, path: Path, fd: int | None, remove: bool) -> None:
        self.path, self._fd, self._remove = path, fd, remove

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        if self._remove:  # while still holding it: a waiter that opened it re-checks the path
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _describe_self(purpose: str) -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                       "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "command": " ".join(sys.argv[:3])}).encode()


def _take(path: Path, purpose: str, remove: bool) -> Lock | None:
    """The lock on ``path`` (created if missing), or None if another process holds it.
    OSError when the lock file cannot be created or locked."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):  # not a file its last holder removed while we opened it
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, _describe_self(purpose), 0)
            return Lock(path, fd, remove)
        os.close(fd)


def holder(path: Path, tries: int = 20) -> dict:
    """What the process holding the lock file ``path`` wrote about itself ({} if unknown)."""
    for _ in range(tries):  # it writes just after taking the lock: give it a moment
        try:
            d = json.loads(Path(path).read_text() or "null")
        except (OSError, ValueError):
            d = None
        if isinstance(d, dict) and "pid" in d:
            return d
        time.sleep(0.05)
    return {}


def describe_holder(info: dict) -> str:
    """"PID 1234 (train since 2026-01-02 03:04:05)", with the host if it is another one."""
    if not info:
        return "another process"
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    what = f"{info.get('purpose', '?')} since {info.get('since', '?')}"
    return f"PID {info.get('pid')}{where} ({what})"


def lock_folder(folder: str | Path, purpose: str) -> Lock:
    """Hold ``folder``'s lock (``FOLDER/.lkmseg.lock``) for ``purpose`` ("train", "export",
    ...) without waiting. Raises ``FolderBusy`` naming the PID of the process holding it, or
    a UserError when the lock file cannot be written (read-only folder, full disk)."""
    path = Path(folder) / FOLDER_LOCK
    try:
        lock = _take(path, purpose, remove=True)
    except OSError as e:
        if e.errno in _NO_LOCKS:
            print(f"warning: {folder}: this file system cannot lock files ({e.strerror}); "
                  "nothing stops another command from writing this folder meanwhile",
                  file=sys.stderr)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return Lock(path, None, remove=False)
        raise explain_os_error(path, e) from e
    if lock is None:
        raise FolderBusy(f"{folder}: in use by {describe_holder(holder(path))}; wait until "
                         "it finishes (or stop it), then run this again")
    return lock


@contextlib.contextmanager
def locked(path: str | Path, purpose: str = "cache update",
           timeout_s: float = 60.0) -> Iterator[Lock | None]:
    """Wait (up to ``timeout_s``) for the lock on ``PATH.lock`` and hold it inside the block:
    a read-modify-write of ``path`` there is not lost to another process's. Yields None when
    the lock could not be had (the lock file cannot be made, or the wait timed out): a cache
    then goes on unlocked rather than failing."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    lock, deadline = None, time.monotonic() + timeout_s
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        while lock is None and time.monotonic() < deadline:
            lock = _take(lock_path, purpose, remove=False)
            if lock is None:
                time.sleep(0.01)
    except OSError:
        lock = None
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
