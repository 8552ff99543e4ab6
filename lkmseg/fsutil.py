"""Atomic file writing: write to a temporary name in the same folder, fsync, then rename.

A crash, a full disk or Ctrl-C never leaves a half-written file under the final name, and
the previous version stays intact until the new one is complete. A process killed with
SIGKILL can leave its temporary file (``.NAME.XXXXXXXX.tmp``) behind: it is never read, and
``remove_stale_temps`` clears such leftovers when a run is resumed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lkmseg.errors import UserError

_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")  # what tempfile.mkstemp makes below


def explain_os_error(path: str | Path, e: OSError) -> UserError:
    """An OSError while writing ``path`` -> a one-line UserError saying what to do."""
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        why = "the disk is full; free space or choose another --out"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the folder is not writable; choose another --out or fix its permissions"
    elif e.errno in (errno.ENOTDIR, errno.EEXIST) and not Path(path).parent.is_dir():
        why = "a parent of it is a file, not a folder; choose another --out"
    else:
        why = f"{e.strerror or e}; check the path"
    return UserError(f"cannot write {path}: {why}")


_explain = explain_os_error  # old name


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every OS can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # write(2) failing, no file named


def _writing_failed(e: OSError, tmp: Path) -> bool:
    """Whether an OSError raised inside ``atomic_path``'s block is about writing its temporary
    file (or a file beside it named after it), not about something else the block did."""
    names = [os.fsdecode(n) for n in (e.filename, e.filename2) if n is not None]
    if names:
        return any(str(Path(n).absolute()).startswith(str(tmp.absolute())) for n in names)
    return e.errno in _WRITE_ERRNOS


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    An OSError writing the temporary file (or renaming it) becomes a one-line UserError naming
    ``path``; any other error inside the block propagates as it is (the temporary file is
    removed either way)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise explain_os_error(path, e) from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if _writing_failed(e, tmp_path):
            raise explain_os_error(path, e) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    try:
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        try:  # mkstemp makes 0600 files; give the result the mode a plain open() would
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
            os.chmod(tmp_path, mode)
        except OSError:
            pass
        os.replace(tmp_path, path)
    except BaseException as e:
        tmp_path.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise explain_os_error(path, e) from e
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files that ``atomic_path`` left in ``folder`` (not below it) when its
    process was killed. Only call this while no other process writes into ``folder``."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if _TEMP.match(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
