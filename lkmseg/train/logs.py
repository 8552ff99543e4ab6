"""CSV logs of a run, appended line by line and cut back to the checkpoint on --resume.

A process killed mid-write can leave a partial last line, and rows for steps after its last
checkpoint: ``CsvLog(..., keep_until_step=N)`` keeps only complete rows with step <= N (in
increasing step order) and rewrites the file atomically before appending again.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lkmseg.fsutil import explain_os_error, write_text

TRAIN_FIELDS = ["step", "epoch", "elapsed_s", "images_per_s", "loss", "lr"]
VAL_FIELDS = ["step", "elapsed_s", "dice", "images_seen", "epoch"]


def _complete_rows(path: Path, keep_until_step: int) -> list[dict]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise explain_os_error(path, e) from e
    if not text.endswith("\n"):  # the last line was cut short by a crash
        text = text[: text.rfind("\n") + 1]
    rows, last = [], 0
    for r in csv.DictReader(io.StringIO(text)):
        if None in r or any(v is None for v in r.values()):  # too many / too few cells
            continue
        try:
            step = int(r["step"])
        except ValueError:
            continue
        if last < step <= keep_until_step:
            rows.append(r)
            last = step
    return rows


class CsvLog:
    def __init__(self, path: Path, fields: list[str], keep_until_step: int | None = None) -> None:
        self.path, self.fields = path, fields
        rows = _complete_rows(path, keep_until_step) if keep_until_step else []
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text(path, buf.getvalue())  # atomic: a kill here keeps the old log
        try:
            self._f = open(path, "a", newline="")  # noqa: SIM115 — kept open, closed by close()
        except OSError as e:
            raise explain_os_error(path, e) from e
        self._w = csv.DictWriter(self._f, fieldnames=fields, extrasaction="ignore",
                                 lineterminator="\n")

    def write(self, **row: object) -> None:
        try:
            self._w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                              for k, v in row.items()})
            self._f.flush()
        except OSError as e:
            raise explain_os_error(self.path, e) from e

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:  # a full disk: the error was already reported by write()
            pass


def read_csv(path: str | Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
