"""The public Python API (re-exported by ``lkmseg``): train, load, predict, save, share,
export, bench, compare, val, convert. The CLI commands call these same functions."""

from lkmseg.api.model import Model, load, val
from lkmseg.api.run import Run, convert, train
from lkmseg.api.tasks import BenchReport, bench, compare, export
from lkmseg.api.validate import ValReport
from lkmseg.predict.results import Result

__all__ = ["BenchReport", "Model", "Result", "Run", "ValReport", "bench", "compare", "convert",
           "export", "load", "train", "val"]
