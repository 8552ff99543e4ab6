"""``lkmseg predict``: masks for images, image folders and videos with any engine."""

from lkmseg.predict.pipeline import (
                                     PredictOptions,
                                     PredictSummary,
                                     predict,
                                     predict_arrays,
                                     run_pipeline,
)
from lkmseg.predict.sources import open_source

__all__ = ["PredictOptions", "PredictSummary", "open_source", "predict", "predict_arrays",
           "run_pipeline"]
