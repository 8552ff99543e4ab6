"""CSV logs of a run, appended line by line and truncated back on --resume."""

from __future__ import annotations

import csv
from pathlib import Path

TRAIN_FIELDS = ["step", "epoch", "elapsed_s", "images_per_s", "loss", "lr"]
VAL_FIELDS = ["step", "elapsed_s", "dice", "images_seen", "epoch"]


class CsvLog:
    def __init__(self, path: Path, fields: list[str], keep_until_step: int | None = None) -> None:
        self.path, self.fields = path, fields
        rows = []
        if keep_until_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step]
        self._f = open(path, "w", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=fields, extrasaction="ignore")
        self._w.writeheader()
        self._w.writerows(rows)
        self._f.flush()

    def write(self, **row: object) -> None:
        self._w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_csv(path: str | Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
