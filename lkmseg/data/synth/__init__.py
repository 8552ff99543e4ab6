"""A deterministic synthetic dataset that looks like Carvana (cars on a studio turntable).

Each car is a small 3-D model built from a seeded RNG (colour, length, height, roof
style, wheel size, mirrors, a whip antenna, lights) and rendered in 16 views around 360°
with a tiny z-buffer rasteriser: every face is a planar polygon filled with
``cv2.fillPoly`` at 2x resolution, the antenna a thick ``cv2.line``. Image and mask come
from the same rasterisation: the image is the 2x colour buffer averaged down
(anti-aliased); the mask is 255 where at least half of a pixel's 2x2 samples hit the
car. The soft floor shadow is part of the backdrop, never of the mask.

``write_synthetic`` writes the Carvana layout (``train/<id>_<NN>.jpg`` +
``train_masks/<id>_<NN>_mask.gif``); ``default_dataset`` caches the embedded default.
Same seed, same bytes.
"""

from lkmseg.data.synth.dataset import (
    car_id,
    car_of,
    dataset_name,
    default_dataset,
    write_synthetic,
)
from lkmseg.data.synth.geometry import VIEWS, CarParams, random_car
from lkmseg.data.synth.raster import render_view

__all__ = ["VIEWS", "CarParams", "car_id", "car_of", "dataset_name", "default_dataset",
           "random_car", "render_view", "write_synthetic"]
