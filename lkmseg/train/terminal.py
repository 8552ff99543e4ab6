"""The terminal side of a training run: the progress bar it draws, and Ctrl-C / SIGTERM as a
request to checkpoint and stop (the loop acts on it at the next step, on every rank)."""

from __future__ import annotations

import signal
import time


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and exits at the next step."""

    REPEAT_S = 1.0  # a repeat this soon is the same request (a launcher forwarding it too)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._at = 0.0
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. called from a worker)
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            if time.monotonic() - self._at < self.REPEAT_S:
                return
            raise KeyboardInterrupt  # a second Ctrl-C: give up waiting
        self.signal, self._at = signum, time.monotonic()

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def progress_bar(console, by_time: bool):
    """A rich Progress showing steps (or % of the time budget), ETA, loss, images/s and the
    last validation Dice; drawn on ``console``, disabled when it is None (ranks > 0)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    unit = "[progress.percentage]{task.percentage:>3.0f}%" if by_time else \
        "{task.fields[step]}/{task.total:.0f}"
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(unit),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    TextColumn("loss {task.fields[loss]:.4f} | {task.fields[ips]:.1f} img/s | "
                               "val dice {task.fields[dice]:.4f}"),
                    console=console, transient=False, disable=console is None)
