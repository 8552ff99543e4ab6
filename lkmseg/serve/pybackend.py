"""Make Triton's Python-backend stub load the *running* interpreter's libpython.

PyTriton's stub (``triton_python_backend_stub``) links ``libpython3.X.so.1.0`` dynamically and
the loader finds the system's copy first. When the running interpreter is another build of the
same version (pyenv, a self-built Python beside the distro's), the model fails to load with
``'_thread.RLock' object has no attribute '_recursion_count'``. The fix: a private folder
holding only a link to this interpreter's own libpython, put first on the server's
``LD_LIBRARY_PATH`` (PyTriton starts ``tritonserver`` with a copy of ``os.environ``), so that no
other library the server loads changes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path


def own_libpython() -> Path | None:
    """This interpreter's shared libpython (e.g. ~/.pyenv/.../lib/libpython3.11.so.1.0), or
    None for a statically linked interpreter."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not libdir or not soname:
        return None
    lib = Path(libdir) / soname
    return lib if lib.is_file() else None


@contextlib.contextmanager
def libpython_on_path() -> Iterator[Path | None]:
    """While inside, ``LD_LIBRARY_PATH`` starts with a folder linking only this interpreter's
    libpython (yields that folder, or None when there is no shared libpython). Start the
    server inside; the folder is removed on exit, after the server has stopped."""
    lib = own_libpython()
    if lib is None:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="lkmseg-libpython-"))
    (folder / lib.name).symlink_to(lib.resolve())
    old = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = f"{folder}:{old}" if old else str(folder)
    try:
        yield folder
    finally:
        if old is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = old
        shutil.rmtree(folder, ignore_errors=True)
