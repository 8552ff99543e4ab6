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


def _scene(h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 0)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 3, h // 2), (w // 5, h // 4), 0, 0, 360, 1, -1)
    return img, mask


def test_augmentation_geometry_is_the_seed_study_transform():
    """OpenCV's warp with the composed pixel matrix = torch's affine_grid + grid_sample
    (align_corners=False, reflection) with the normalised theta, to interpolation rounding."""
    import math

    import torch
    import torch.nn.functional as F

    from lkmseg.data.transforms import _affine

    img, _ = _scene()
    h, w = img.shape[:2]
    for u in (np.array([0.1, 0.9, 0.2, 0.8, 0.3]), np.array([0.9, 0.2, 0.7, 0.1, 0.6])):
        m = _affine(u, h, w, shift=0.0625, scale=0.1, rotate_deg=20, p_flip=0.5)
        ours = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        flip = -1.0 if u[0] < 0.5 else 1.0
        s = 1 + (u[1] * 2 - 1) * 0.1
        ang = (u[2] * 2 - 1) * math.radians(20)
        c, si = math.cos(ang) / s, math.sin(ang) / s
        theta = torch.tensor([[[c * flip, -si, (u[3] * 2 - 1) * 0.125],
                               [si * flip, c, (u[4] * 2 - 1) * 0.125]]], dtype=torch.float32)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        grid = F.affine_grid(theta, [1, 3, h, w], align_corners=False)
        ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                            align_corners=False)[0].permute(1, 2, 0).numpy()
        diff = np.abs(ours - ref)
        assert diff.mean() < 0.6 and np.percentile(diff, 99) < 2.5, (diff.mean(), diff.max())


def test_augmentation_is_seeded_and_keeps_image_and_mask_aligned():
    from lkmseg.data.transforms import augment_uint8

    img, mask = _scene()
    a = augment_uint8(img, mask, 7)
    b = augment_uint8(img, mask, 7)
    c = augment_uint8(img, mask, 8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.uint8 and a[0].shape == img.shape
    assert a[1].dtype == np.uint8 and set(np.unique(a[1])) <= {0, 1}
    # nothing but a flip: an exact mirror of both
    fl = augment_uint8(img, mask, 0, shift=0, scale=0, hue=0, sat=0, val=0, p_flip=1.0)
    assert np.array_equal(fl[0], img[:, ::-1]) and np.array_equal(fl[1], mask[:, ::-1])
    same = augment_uint8(img, mask, 0, shift=0, scale=0, hue=0, sat=0, val=0, p_flip=0.0)
    assert np.array_equal(same[0], img) and np.array_equal(same[1], mask)
    # geometry only: the mask moves with the image (its area changes by the scale at most)
    g = augment_uint8(img, mask, 3, hue=0, sat=0, val=0)
    assert abs(int(g[1].sum()) - int(mask.sum())) < 0.25 * mask.sum()
    # colour only: the mask stays, the image changes within the jitter's reach
    col = augment_uint8(img, mask, 5, shift=0, scale=0, p_flip=0.0)
    assert np.array_equal(col[1], mask)
    d = np.abs(col[0].astype(int) - img.astype(int))
    assert 0 < d.mean() < 0.25 * 255




def test_batches_and_preprocessed_images_are_contiguous_nchw():
    """A permuted (B, H, W, 3) view has channels_last strides; handed to the model it made
    convolutions answer in channels_last and BatchNorm's backward 12x slower in an "NCHW"
    run. Batches and preprocessed images are plain contiguous NCHW."""
    import torch

    from lkmseg.data.loader import BatchSource
    from lkmseg.data.transforms import preprocess

    img, mask = _scene(32, 48)
    src = BatchSource(np.stack([img] * 4), np.stack([mask] * 4), 2, seed=0)
    for augment in (True, False):
        src.augment = augment
        x, y = src.batch(0)
        assert x.shape == (2, 3, 32, 48) and x.is_contiguous() and y.is_contiguous()
        assert not x.is_contiguous(memory_format=torch.channels_last)
    p = preprocess([img, img], (16, 24))
    assert p.shape == (2, 3, 16, 24) and p.is_contiguous()


def test_gpu_runs_augment_in_a_pool_with_the_same_results():
    import torch

    from lkmseg.data.loader import BatchSource
    from lkmseg.data.transforms import augment_uint8

    img, mask = _scene(32, 48)
    imgs, msks, seeds = [img] * 6, [mask] * 6, list(range(6))
    src = BatchSource(np.stack(imgs), np.stack(msks), 6, seed=0)
    serial = list(src._map(augment_uint8, imgs, msks, seeds))
    assert src._pool is None  # CPU: in the calling thread
    src.device = torch.device("cuda")  # (nothing is moved to a device here)
    pooled = list(src._map(augment_uint8, imgs, msks, seeds))
    assert src._pool is not None
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(serial, pooled))
    src._pool.shutdown()


def test_postprocess_resizes_logits_like_torch_bilinear():
    """OpenCV's INTER_LINEAR on the logits = torch's bilinear (align_corners=False) to float
    rounding; masks are the resized logits above logit(threshold)."""
    import torch
    import torch.nn.functional as F

    from lkmseg.data.transforms import logit_threshold, postprocess, resize_logits

    lg = np.random.default_rng(0).standard_normal((2, 1, 16, 24)).astype(np.float32)
    sizes = [(61, 97), (16, 24)]
    maps = resize_logits(lg, sizes)
    ref = F.interpolate(torch.from_numpy(lg[:1]), size=sizes[0], mode="bilinear",
                        align_corners=False)[0, 0].numpy()
    assert maps[0].shape == (61, 97) and maps[0].dtype == np.float32
    assert np.abs(maps[0] - ref).max() < 1e-4
    assert np.array_equal(maps[1], lg[1, 0])  # same size: untouched
    masks = postprocess(torch.from_numpy(lg), sizes, 0.7)
    for m, mp in zip(masks, maps):
        assert m.dtype == np.uint8 and np.array_equal(m, (mp > logit_threshold(0.7)))
