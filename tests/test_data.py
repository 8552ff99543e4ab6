import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_pairs

from lkmseg.data.cache import build_cache
from lkmseg.data.datasets import find_items, split_by_group
from lkmseg.data.imageio import read_image, read_mask
from lkmseg.errors import UserError


def test_carvana_layout_and_split_by_car(tmp_path):
    write_pairs(tmp_path, "carvana", groups=6, views=4)
    layout, items = find_items(tmp_path)
    assert layout == "carvana" and len(items) == 24
    assert all(it.mask.name == f"{it.image.stem}_mask.gif" for it in items)
    train, val = split_by_group(items, val_frac=0.34, seed=3)
    tg, vg = {i.group for i in train}, {i.group for i in val}
    assert not tg & vg and len(vg) == 3 and len(tg) == 3  # whole cars on one side
    assert len(train) + len(val) == 24
    again = split_by_group(items, val_frac=0.34, seed=3)[1]
    assert [i.image for i in again] == [i.image for i in val]  # deterministic
    other = {i.group for i in split_by_group(items, val_frac=0.34, seed=4)[1]}
    assert len(other) == 3


def test_generic_layout_group_pattern(tmp_path):
    write_pairs(tmp_path, "folders", groups=3, views=2)
    layout, items = find_items(tmp_path)
    assert layout == "folders" and len({i.group for i in items}) == 6  # default: per image
    _, items = find_items(tmp_path, group_pattern=r"^([0-9a-f]+)_")
    assert len({i.group for i in items}) == 3


def test_image_modes(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    assert read_image(tmp_path / "a.png")[0, 0].tolist() == [200, 0, 0]  # RGB order
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 7), 90, np.uint8))
    assert read_image(tmp_path / "g.png").shape == (5, 7, 3)
    rgba = np.dstack([rgb[..., ::-1], np.full((5, 7), 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "r.png"), rgba)
    assert read_image(tmp_path / "r.png")[0, 0].tolist() == [200, 0, 0]
    cv2.imwrite(str(tmp_path / "w.png"), np.full((5, 7), 40000, np.uint16))
    assert read_image(tmp_path / "w.png")[0, 0, 0] == 40000 >> 8
    m = np.zeros((5, 7), np.uint8)
    m[1:3] = 255
    m[4] = 100  # below 128: background
    cv2.imwrite(str(tmp_path / "m.tif"), m)
    assert read_mask(tmp_path / "m.tif").sum() == 14


@pytest.mark.parametrize("case", ["missing", "empty", "nomask", "othersize", "corrupt",
                                  "truncated", "zero", "notdir"])
def test_bad_data_names_the_file(tmp_path, case):
    root = write_pairs(tmp_path / "d", "carvana", groups=2, views=2)
    img = root / "train" / "000000000001_01.jpg"
    msk = root / "train_masks" / "000000000001_01_mask.gif"
    target, data = img, root
    if case == "missing":
        data = tmp_path / "nope"
        target = data
    elif case == "empty":
        shutil.rmtree(root / "train")
        (root / "train").mkdir()
        target = root / "train"
    elif case == "nomask":
        msk.unlink()
    elif case == "othersize":
        cv2.imwrite(str(tmp_path / "x.png"), np.zeros((10, 10), np.uint8))
        from PIL import Image
        Image.open(tmp_path / "x.png").save(msk)
        target = msk
    elif case == "corrupt":
        img.write_bytes(b"this is not a jpeg at all" * 10)
    elif case == "truncated":
        img.write_bytes(img.read_bytes()[:200])
    elif case == "zero":
        img.write_bytes(b"")
    elif case == "notdir":
        data = img
    with pytest.raises(UserError) as e:
        _, items = find_items(data)
        build_cache(items, (32, 32), root=tmp_path / "cache")
    assert str(target) in str(e.value)


def test_skip_bad_reports_and_continues(tmp_path):
    root = write_pairs(tmp_path / "d", "carvana", groups=3, views=2)
    bad = root / "train" / "000000000002_01.jpg"
    bad.write_bytes(b"garbage")
    _, items = find_items(root)
    c = build_cache(items, (32, 32), root=tmp_path / "cache", skip_bad=True)
    assert len(c.items) == 5 and len(c.skipped) == 1 and str(bad) in c.skipped[0]


def test_cache_reused_and_invalidated(tmp_path):
    root = write_pairs(tmp_path / "d", "carvana", groups=2, views=3, size=(48, 64))
    _, items = find_items(root)
    c1 = build_cache(items, (32, 40), root=tmp_path / "cache")
    assert not c1.reused and c1.images.shape == (6, 32, 40, 3) and c1.masks.shape == (6, 32, 40)
    assert set(np.unique(c1.masks)) <= {0, 1} and c1.masks.any()
    c2 = build_cache(items, (32, 40), root=tmp_path / "cache")
    assert c2.reused and c2.path == c1.path
    assert np.array_equal(c1.images, c2.images) and np.array_equal(c1.masks, c2.masks)
    assert not build_cache(items, (16, 16), root=tmp_path / "cache").reused  # other size
    f = items[0].image
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # edited file
    assert not build_cache(items, (32, 40), root=tmp_path / "cache").reused


def test_real_carvana_split(carvana_dir: Path):
    layout, items = find_items(carvana_dir)
    assert layout == "carvana" and len(items) == 384
    train, val = split_by_group(items, 0.25, seed=0)
    assert len({i.group for i in val}) == 6 and len(val) == 96
    assert not {i.group for i in train} & {i.group for i in val}


def test_hsv_round_trip_and_known_hues():
    """The augmentation's colour conversions: exact hues of primaries, identity round trip
    (the closed-form hsv->rgb must equal the six-sector table it replaced)."""
    import torch

    from lkmseg.data.transforms import _hsv_to_rgb, _rgb_to_hsv

    prim = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5], [0, 0, 0]],
                        dtype=torch.float32).T.reshape(1, 3, 1, 6)
    h, s, v = _rgb_to_hsv(prim)[0, :, 0]
    assert torch.allclose(h, torch.tensor([0, 1 / 3, 2 / 3, 1 / 6, 0, 0]), atol=1e-6)
    assert torch.allclose(s, torch.tensor([1, 1, 1, 1, 0, 0.0]))
    assert torch.allclose(v, torch.tensor([1, 1, 1, 1, 0.5, 0]))
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert (_hsv_to_rgb(_rgb_to_hsv(x)) - x).abs().max() < 1e-5
    assert (_hsv_to_rgb(_rgb_to_hsv(prim)) - prim).abs().max() < 1e-6
