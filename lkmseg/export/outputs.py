"""The export folder as one transaction.

Every file an export makes goes into a staging folder inside the export folder
(``.export-XXXXXXXX/``); only when the export has finished are the files moved into place, and
only then are stale files removed: those an earlier lkmseg export wrote (``manifest.json``,
content unchanged since) that this one did not rewrite, and ONNX Runtime's TensorRT engine
cache of the ONNX files replaced. Anything else in the folder — a user's own files in
``--out DIR`` — is never touched. A failed or interrupted export leaves the folder as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lkmseg.errors import UserError
from lkmseg.export.gated_formats import REJECTED
from lkmseg.files.layout import ENGINE_FILE, ONNX_FILES, ORT_TRT_CACHE, REPORT, sidecar_path
from lkmseg.files.manifest import (
    EXPORT_MANIFEST,
    digests,
    file_digest,
    read_manifest,
    unchanged,
    write_manifest,
)
from lkmseg.fsutil import explain_os_error

# what exports wrote before manifests existed (trusted only in a run's own export folder)
LEGACY = (*ONNX_FILES.values(), REJECTED, ENGINE_FILE, sidecar_path(Path(ENGINE_FILE)).name,
          REPORT)


def _plain(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


class ExportFolder:
    def __init__(self, out: Path, own: bool, run_dir: Path, log: Callable[[str], None]) -> None:
        """``own``: the run's own export folder (RUN/export), where files from exports made
        before manifests existed count as lkmseg's."""
        self.out, self.own, self.run_dir, self.log = Path(out), own, run_dir, log
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out}: is a file, not a folder; choose another --out")
        man = self.out / EXPORT_MANIFEST
        if not own and man.exists() and read_manifest(man) is None:
            raise UserError(f"--out {self.out}: holds a {EXPORT_MANIFEST} lkmseg did not write "
                            "(an export writes its own there); choose another --out")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.stage = Path(tempfile.mkdtemp(prefix=".export-", dir=self.out))
        except OSError as e:
            raise explain_os_error(self.out, e) from e

    def final(self, path: Path) -> Path:
        """Where a staged file will lie once committed."""
        path = Path(path)
        return self.out / path.name if path.parent == self.stage else path

    def _previous(self) -> dict[str, str]:
        """{name: sha256} of the files an earlier lkmseg export wrote here and nobody changed
        since."""
        man = read_manifest(self.out / EXPORT_MANIFEST)
        if man is None:
            if not self.own:
                return {}
            return {n: file_digest(self.out / n) for n in LEGACY if (self.out / n).is_file()}
        ours = {}
        for name, sha in man["files"].items():
            if not _plain(name) or name == EXPORT_MANIFEST:
                continue
            if unchanged(self.out, name, sha):
                ours[name] = sha
            elif (self.out / name).exists():
                self.log(f"kept {name}: changed since lkmseg wrote it, so it is not lkmseg's")
        return ours

    def commit(self, new_model: bool) -> None:
        """Move the staged files into place, then remove what they make stale. ``new_model``:
        this export wrote the ONNX model (with --no-onnx it only added files beside it)."""
        old = self._previous()
        names = [p.name for p in self.stage.iterdir() if p.is_file() and not p.is_symlink()]
        new = digests(self.stage, names)
        try:
            for name in names:
                os.replace(self.stage / name, self.out / name)
        except OSError as e:
            raise explain_os_error(self.out / name, e) from e
        kept = {}
        for name, sha in old.items():
            if name in new:
                continue
            if new_model:
                (self.out / name).unlink(missing_ok=True)
                self.log(f"removed {name} left by an earlier export (stale now)")
            else:
                kept[name] = sha
        if new_model:
            self._clear_ort_cache({sha for name, sha in old.items() if name.endswith(".onnx")}
                                  - set(new.values()))
        write_manifest(self.out / EXPORT_MANIFEST, {**kept, **new}, run=str(self.run_dir))
        self.discard()

    def _clear_ort_cache(self, gone: set[str]) -> None:
        """ONNX Runtime's TensorRT engines of ONNX files replaced (``ort_trt_cache_dir`` keys
        them by the file's content digest)."""
        cache = self.out / ORT_TRT_CACHE
        for sha in sorted(gone):
            sub = cache / sha[:16]
            if sub.is_dir() and not sub.is_symlink():
                shutil.rmtree(sub)
                self.log(f"removed {ORT_TRT_CACHE}/{sub.name}/ (ONNX Runtime TensorRT engines "
                         "of the old model)")
        try:
            cache.rmdir()  # only when empty
        except OSError:
            pass

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
