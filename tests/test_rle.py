"""Carvana run-length encoding: hand-computed cases, round trips, bad strings."""

from __future__ import annotations

import numpy as np
import pytest

from lkmseg.data.rle import rle_decode, rle_encode
from lkmseg.errors import UserError


def test_hand_computed_row_major():
    # pixels numbered 1..12 row by row:  1  2  3  4 /  5  6  7  8 /  9 10 11 12
    m = np.array([[0, 1, 1, 0],
                  [0, 0, 0, 1],
                  [1, 1, 0, 0]], dtype=np.uint8)
    assert rle_encode(m) == "2 2 8 3"  # 2,3 then 8,9,10 (run wraps from row 2 into row 3)
    assert np.array_equal(rle_decode("2 2 8 3", (3, 4)), m)


def test_hand_computed_column_major_order_option():
    m = np.array([[0, 1, 1, 0],
                  [0, 0, 0, 1],
                  [1, 1, 0, 0]], dtype=np.uint8)
    # column-major numbering: col0 = 1,2,3; col1 = 4,5,6; col2 = 7,8,9; col3 = 10,11,12
    assert rle_encode(m, order="F") == "3 2 6 2 11 1"
    assert np.array_equal(rle_decode("3 2 6 2 11 1", (3, 4), order="F"), m)


@pytest.mark.parametrize("mask, expected", [
    (np.zeros((2, 3), np.uint8), ""),
    (np.ones((2, 3), np.uint8), "1 6"),
    (np.array([[1, 0, 0], [0, 0, 1]], np.uint8), "1 1 6 1"),  # first and last pixel
    (np.array([[0, 255, 0]], np.uint8), "2 1"),  # any nonzero value is foreground
    (np.array([[True, True, False]]), "1 2"),
])
def test_edges(mask, expected):
    assert rle_encode(mask) == expected
    assert np.array_equal(rle_decode(expected, mask.shape), (mask != 0).astype(np.uint8))


def test_round_trip_random_and_carvana_size():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 96)]:
        m = (rng.random(shape) > 0.5).astype(np.uint8)
        assert np.array_equal(rle_decode(rle_encode(m), shape), m)
    car = np.zeros((1280, 1918), np.uint8)  # a Carvana-size blob
    car[400:900, 300:1600] = 1
    s = rle_encode(car)
    first_start = int(s.split()[0])
    assert first_start == 400 * 1918 + 300 + 1  # row-major, 1-indexed
    assert len(s.split()) == 2 * 500  # one run per row
    assert np.array_equal(rle_decode(s, car.shape), car)


@pytest.mark.parametrize("bad", ["1 2 3", "0 5", "1 -2", "a b", "10 5"])
def test_invalid_strings_are_user_errors(bad):
    with pytest.raises(UserError):
        rle_decode(bad, (3, 4))


@pytest.mark.realdata
def test_round_trip_real_carvana_masks(carvana_dir):
    from lkmseg.data.imageio import read_mask

    for gif in sorted((carvana_dir / "train_masks").glob("*_mask.gif"))[:3]:
        m = read_mask(gif)
        assert m.shape == (1280, 1918) and 0 < m.mean() < 1
        s = rle_encode(m)
        assert np.array_equal(rle_decode(s, m.shape), m)
        starts = np.array(s.split()[0::2], dtype=np.int64)
        assert (np.diff(starts) > 0).all()  # runs in increasing row-major order
