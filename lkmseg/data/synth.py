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

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lkmseg.errors import UserError

GENERATOR_VERSION = 1
VIEWS = 16
SUPERSAMPLE = 2

# materials
PAINT, GLASS, TIRE, RIM, DARK, HEADLIGHT, TAILLIGHT, PLATE = range(8)
_MAT_RGB = np.array([(0, 0, 0), (22, 27, 33), (30, 30, 32), (178, 180, 184), (16, 16, 18),
                     (236, 238, 240), (165, 18, 24), (226, 226, 216)], np.float32)
_MAT_SPEC = np.array([0.35, 0.55, 0.05, 0.4, 0.08, 0.3, 0.3, 0.05], np.float32)

_PALETTE = [((236, 236, 234), 0.22), ((22, 22, 24), 0.18), ((172, 175, 180), 0.16),
            ((98, 100, 105), 0.12), ((158, 22, 28), 0.08), ((28, 52, 118), 0.08),
            ((18, 26, 56), 0.05), ((32, 70, 46), 0.04), ((190, 174, 146), 0.04),
            ((208, 98, 22), 0.03)]

# studio: fixed camera looking at the turntable centre (metres, degrees)
_CAM_DIST, _CAM_ELEV, _CAM_TARGET_Z, _WALL_DIST = 9.0, 9.0, 0.62, 5.0
_CAM_CY = 0.53  # the turntable centre sits this far down the frame
_STUDIO_GREY = 215.0
_LIGHT = np.array([0.45, 0.35, 1.0]) / np.linalg.norm([0.45, 0.35, 1.0])


@dataclass(frozen=True)
class CarParams:
    """One car's shape and look. Lengths in metres; +x is the front, z is up."""

    style: str
    color: tuple[int, int, int]
    rim_color: tuple[int, int, int]
    length: float
    width: float
    clearance: float        # underbody height above the floor
    body_top: float         # height of the trunk/belt line
    hood_drop: float        # the hood's front edge sits this much lower
    cabin_height: float
    hood_len: float         # front of the car to the windshield base
    trunk_len: float        # rear of the car to the rear window base
    windshield_run: float   # horizontal run of the windshield
    rear_run: float         # horizontal run of the rear window
    wheel_radius: float
    wheelbase: float
    tire_width: float
    mirror_ext: float       # how far a mirror sticks out beyond the body side
    antenna_len: float
    antenna_tilt: float     # degrees from vertical, leaning back
    backdrop: float         # studio brightness offset of this car's photo session
    noise_seed: int


class Face(NamedTuple):
    pts: np.ndarray     # (N, 3) car coordinates, a planar polygon
    mat: int
    normal: np.ndarray  # (3,) outward unit normal


class _Camera(NamedTuple):
    pos: np.ndarray
    right: np.ndarray
    up: np.ndarray
    fwd: np.ndarray
    focal: float
    cx: float
    cy: float


def _pick(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


_STYLES = {  # length, body_top, cabin_height, clearance, wheel_radius, hood, trunk, ws, rear
    "sedan": ((4.5, 5.0), (0.78, 0.88), (0.50, 0.58), (0.14, 0.19), (0.31, 0.35),
              (0.27, 0.31), (0.19, 0.23), (0.55, 0.80), (0.50, 0.70)),
    "hatchback": ((3.9, 4.4), (0.80, 0.90), (0.56, 0.63), (0.14, 0.18), (0.30, 0.34),
                  (0.24, 0.28), (0.04, 0.07), (0.50, 0.70), (0.18, 0.32)),
    "suv": ((4.4, 4.9), (0.98, 1.10), (0.60, 0.70), (0.21, 0.28), (0.36, 0.41),
            (0.21, 0.26), (0.02, 0.04), (0.40, 0.55), (0.08, 0.16)),
    "coupe": ((4.3, 4.7), (0.72, 0.80), (0.42, 0.48), (0.12, 0.16), (0.32, 0.36),
              (0.29, 0.33), (0.15, 0.20), (0.65, 0.90), (0.65, 0.90)),
}


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    probs = np.array([p for _, p in _PALETTE])
    base = np.array(_PALETTE[int(rng.choice(len(_PALETTE), p=probs / probs.sum()))][0])
    rgb = np.clip(base + rng.integers(-8, 9, 3), 0, 255)
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def random_car(rng: np.random.Generator) -> CarParams:
    """Draw one car from ``rng`` (all randomness of a car comes from here)."""
    style = str(rng.choice(list(_STYLES), p=[0.4, 0.25, 0.25, 0.1]))
    ln, top, cab, clr, wr, hood, trunk, ws, rear = (_pick(rng, *r) for r in _STYLES[style])
    dark_rims = rng.random() < 0.35
    return CarParams(
        style=style, color=_color(rng),
        rim_color=(52, 54, 58) if dark_rims else (182, 184, 188),
        length=ln, width=_pick(rng, 1.76, 1.94) + (0.04 if style == "suv" else 0.0),
        clearance=clr, body_top=top, hood_drop=_pick(rng, 0.04, 0.11), cabin_height=cab,
        hood_len=hood * ln, trunk_len=trunk * ln, windshield_run=ws, rear_run=rear,
        wheel_radius=wr, wheelbase=_pick(rng, 0.57, 0.62) * ln,
        tire_width=_pick(rng, 0.19, 0.25), mirror_ext=_pick(rng, 0.09, 0.15),
        antenna_len=_pick(rng, 0.28, 0.6), antenna_tilt=_pick(rng, 12, 38),
        backdrop=_pick(rng, -8, 8), noise_seed=int(rng.integers(2**31)))


# ----------------------------------------------------------------------------- geometry


def _oriented(pts: np.ndarray, mat: int, inside: np.ndarray) -> Face:
    """A face whose normal (Newell's method) points away from ``inside``."""
    n = np.cross(pts, np.roll(pts, -1, axis=0)).sum(axis=0)
    n = n / (np.linalg.norm(n) + 1e-12)
    if np.dot(n, pts.mean(axis=0) - inside) < 0:
        n = -n
    return Face(pts, mat, n)


def _decal(pts: np.ndarray, mat: int, normal: tuple[float, float, float],
           lift: float = 0.004) -> Face:
    """A flat detail lying ``lift`` metres in front of a surface with ``normal``."""
    n = np.asarray(normal, float)
    return Face(np.asarray(pts, float) + lift * n, mat, n)


def _solid(verts: np.ndarray, faces: list[list[int]], mat: int) -> list[Face]:
    inside = verts.mean(axis=0)
    return [_oriented(verts[f], mat, inside) for f in faces]


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float], mat: int) -> list[Face]:
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    v = np.array([(x, y, z) for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], float)
    quads = [[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4], [1, 3, 7, 5]]
    return _solid(v, quads, mat)


def _profile(c: CarParams) -> np.ndarray:
    """Side silhouette of the lower body, (x, z), convex, counter-clockwise, front at +x."""
    h, z0, top = c.length / 2, c.clearance, c.body_top
    hf = top - c.hood_drop
    return np.array([(h - 0.22, z0), (h - 0.05, z0 + 0.07), (h, z0 + 0.20), (h, hf - 0.14),
                     (h - 0.05, hf - 0.04), (h - 0.22, hf), (-h + 0.22, top),
                     (-h + 0.05, top - 0.05), (-h, top - 0.14), (-h, z0 + 0.20),
                     (-h + 0.05, z0 + 0.07), (-h + 0.22, z0)])


def _loft(prof: np.ndarray, half_width: Callable[[np.ndarray], np.ndarray],
          mat: int) -> list[Face]:
    """A convex solid: profile (x, z) on both sides, y = +-half_width(z), and the bands."""
    n = len(prof)
    y = half_width(prof[:, 1])
    verts = np.concatenate([np.stack([prof[:, 0], s * y, prof[:, 1]], axis=1) for s in (1, -1)])
    faces = [list(range(n)), list(range(n, 2 * n))]
    faces += [[i, (i + 1) % n, n + (i + 1) % n, n + i] for i in range(n)]
    return _solid(verts, faces, mat)


def _body(c: CarParams) -> list[Face]:
    return _loft(_profile(c), lambda z: np.full_like(z, c.width / 2), PAINT)


class _Cabin(NamedTuple):
    prof: np.ndarray  # (6, 2) base-front, windshield top, roof crest x2, roof rear, base-rear
    zb: float         # base height (sunk into the body)
    zt: float         # roof height
    wb: float         # half width at the base
    wt: float         # half width at the roof

    def half_width(self, z: np.ndarray) -> np.ndarray:
        return self.wb + (self.wt - self.wb) * (np.asarray(z) - self.zb) / (self.zt - self.zb)


def _cabin_shape(c: CarParams) -> _Cabin:
    h = c.length / 2
    cf, cr = h - c.hood_len, -h + c.trunk_len
    zb, zt = c.body_top - c.hood_drop - 0.02, c.body_top + c.cabin_height
    rf, rr = cf - c.windshield_run, cr + c.rear_run
    span = rf - rr
    prof = np.array([(cf, zb), (rf, zt - 0.05), (rf - 0.3 * span, zt), (rr + 0.3 * span, zt),
                     (rr, zt - 0.06), (cr, zb)])
    return _Cabin(prof, zb, zt, 0.45 * c.width, 0.37 * c.width)


def _clip(poly: np.ndarray, n: np.ndarray, k: float) -> np.ndarray:
    """Sutherland-Hodgman: the part of a 2-D polygon where n . p >= k."""
    out = []
    d = poly @ n - k
    for i in range(len(poly)):
        j = (i + 1) % len(poly)
        if d[i] >= 0:
            out.append(poly[i])
        if (d[i] >= 0) != (d[j] >= 0):
            out.append(poly[i] + (poly[j] - poly[i]) * (d[i] / (d[i] - d[j])))
    return np.array(out).reshape(-1, 2)


def _inset(poly: np.ndarray, margin: float) -> np.ndarray:
    """Shrink a convex counter-clockwise polygon by ``margin``."""
    out = poly
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        e = b - a
        n = np.array([-e[1], e[0]]) / (np.linalg.norm(e) + 1e-12)  # inward (left) normal
        out = _clip(out, n, float(n @ a) + margin)
    return out


def _side_windows(c: CarParams, cab: _Cabin, s: int) -> list[Face]:
    """Front and rear side windows, split by the B-pillar, above the belt line."""
    glass = _clip(_inset(cab.prof, 0.06), np.array([0.0, 1.0]), c.body_top + 0.05)
    x_b = cab.prof[0, 0] + 0.52 * (cab.prof[-1, 0] - cab.prof[0, 0])
    out = []
    for sign in (1.0, -1.0):  # front pane keeps x >= x_b + 0.04, rear pane x <= x_b - 0.04
        pane = _clip(glass, np.array([sign, 0.0]), sign * x_b + 0.04)
        if len(pane) >= 3:
            y = s * cab.half_width(pane[:, 1])
            pts = np.stack([pane[:, 0], y, pane[:, 1]], axis=1)
            out.append(_oriented(pts + np.array([0, s * 0.004, 0]), GLASS,
                                 np.array([pane[:, 0].mean(), 0.0, pane[:, 1].mean()])))
    return out


def _band_glass(c: CarParams, cab: _Cabin, a: np.ndarray, b: np.ndarray,
                normal: np.ndarray) -> Face:
    """Windshield / rear window: the band from a to b above the belt, minus the pillars."""
    t0 = np.clip((c.body_top + 0.04 - a[1]) / (b[1] - a[1]), 0, 1)
    p0, p1 = a + t0 * (b - a), a + 0.93 * (b - a)
    w0, w1 = cab.half_width(p0[1]) - 0.07, cab.half_width(p1[1]) - 0.07
    pts = np.array([(p0[0], w0, p0[1]), (p0[0], -w0, p0[1]),
                    (p1[0], -w1, p1[1]), (p1[0], w1, p1[1])])
    return _decal(pts, GLASS, tuple(normal))


def _cabin(c: CarParams) -> list[Face]:
    cab = _cabin_shape(c)
    faces = _loft(cab.prof, cab.half_width, PAINT)
    out = list(faces)
    out.append(_band_glass(c, cab, cab.prof[0], cab.prof[1], faces[2].normal))
    out.append(_band_glass(c, cab, cab.prof[5], cab.prof[4], faces[6].normal))
    return out + _side_windows(c, cab, 1) + _side_windows(c, cab, -1)


def _circle(cx: float, cz: float, r: float, y: float, n: int = 20,
            a0: float = 0.0, a1: float = 2 * np.pi) -> np.ndarray:
    a = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * np.pi - 1e-9)
    return np.stack([cx + r * np.cos(a), np.full(n, y), cz + r * np.sin(a)], axis=1)


def _rim(c: CarParams, x: float, y: float, s: int) -> list[Face]:
    r, nrm = c.wheel_radius, (0.0, float(s), 0.0)
    out = [_decal(_circle(x, r, 0.66 * r, y), RIM, nrm, 0.004)]
    for k in range(5):  # dark openings between the five spokes
        a = 2 * np.pi * k / 5 + 0.35
        arc = _circle(x, r, 0.58 * r, y, 4, a, a + 0.75)
        inner = _circle(x, r, 0.26 * r, y, 3, a + 0.7, a + 0.05)
        out.append(_decal(np.vstack([arc, inner]), DARK, nrm, 0.007))
    out.append(_decal(_circle(x, r, 0.14 * r, y, 8), RIM, nrm, 0.010))
    return out


def _wheel(c: CarParams, x: float, s: int) -> list[Face]:
    """A tyre (18-sided cylinder across y) with a spoked rim on its outer face."""
    r, n = c.wheel_radius, 18
    yo, yi = s * (c.width / 2 + 0.012), s * (c.width / 2 - c.tire_width)
    outer, inner = _circle(x, r, r, yo, n), _circle(x, r, r, yi, n)
    verts = np.vstack([outer, inner])
    faces = [list(range(n)), list(range(n, 2 * n))]
    faces += [[i, (i + 1) % n, n + (i + 1) % n, n + i] for i in range(n)]
    arch = _circle(x, r, 1.12 * r, s * c.width / 2, 12, -0.35, np.pi + 0.35)
    arch[:, 2] = np.maximum(arch[:, 2], c.clearance)
    return ([_decal(arch, DARK, (0.0, float(s), 0.0), 0.003)] + _solid(verts, faces, TIRE)
            + _rim(c, x, yo, s))


def _mirror(c: CarParams, s: int) -> list[Face]:
    """A mirror head beyond the body side, held by a thin stalk from the cabin."""
    cab = _cabin_shape(c)
    x, w = cab.prof[0, 0] - 0.14, c.width / 2
    top = _profile(c)[5:7]  # the hood-to-trunk line, front to back
    z = float(np.interp(x, top[::-1, 0], top[::-1, 1])) + 0.015  # sits on the door top
    head_y = sorted((s * (w - 0.03), s * (w + c.mirror_ext)))
    head = _box((x - 0.10, head_y[0], z), (x, head_y[1], z + 0.13), PAINT)
    y0, y1 = sorted((s * (cab.wb - 0.05), s * (w - 0.02)))
    stalk = _box((x - 0.06, y0, z + 0.02), (x - 0.03, y1, z + 0.05), DARK)
    return head + stalk


def _rect_x(x: float, ys: tuple[float, float], zs: tuple[float, float]) -> np.ndarray:
    return np.array([(x, ys[0], zs[0]), (x, ys[1], zs[0]), (x, ys[1], zs[1]), (x, ys[0], zs[1])])


def _lights(c: CarParams) -> list[Face]:
    """Headlights, grille and air intake in front; tail lights and the plate at the back."""
    h, w, z0 = c.length / 2, c.width / 2, c.clearance
    hf, ht = c.body_top - c.hood_drop - 0.14, c.body_top - 0.14  # tops of the flat faces
    out = []
    for s in (1, -1):
        ys = (s * (w - 0.08), s * (w - 0.40))
        out.append(_decal(_rect_x(h, ys, (hf - 0.14, hf - 0.02)), HEADLIGHT, (1, 0, 0)))
        out.append(_decal(_rect_x(-h, ys, (ht - 0.16, ht - 0.03)), TAILLIGHT, (-1, 0, 0)))
    out.append(_decal(_rect_x(h, (-0.3, 0.3), (hf - 0.15, hf - 0.03)), DARK, (1, 0, 0)))
    out.append(_decal(_rect_x(h, (-0.45, 0.45), (z0 + 0.22, z0 + 0.31)), DARK, (1, 0, 0)))
    out.append(_decal(_rect_x(-h, (-0.26, 0.26), (z0 + 0.24, z0 + 0.35)), PLATE, (-1, 0, 0)))
    return out


def _seams(c: CarParams) -> list[Face]:
    """Door gaps: thin dark strips on both body sides."""
    cab = _cabin_shape(c)
    cf, cr, w = cab.prof[0, 0], cab.prof[-1, 0], c.width / 2
    arch = c.wheelbase / 2 - 1.2 * c.wheel_radius  # keep the gaps clear of the wheel arches
    xs = (min(cf - 0.02, arch), float(np.clip(cf + 0.52 * (cr - cf), -arch, arch)))
    out = []
    for s in (1, -1):
        for x in xs:
            pts = [(x, s * w, c.clearance + 0.1), (x + 0.012, s * w, c.clearance + 0.1),
                   (x + 0.012, s * w, c.body_top - 0.03), (x, s * w, c.body_top - 0.03)]
            out.append(_decal(np.array(pts), DARK, (0, s, 0), 0.002))
    return out


def _car_faces(c: CarParams) -> list[Face]:
    faces = _body(c) + _cabin(c) + _lights(c) + _seams(c)
    for s in (1, -1):
        faces += _mirror(c, s)
        for x in (c.wheelbase / 2, -c.wheelbase / 2):
            faces += _wheel(c, x, s)
    return faces


def _antenna(c: CarParams) -> tuple[np.ndarray, np.ndarray]:
    """A whip antenna leaning back from the rear of the roof."""
    cab = _cabin_shape(c)
    base = np.array([cab.prof[4, 0] + 0.12, 0.0, cab.zt - 0.03])
    t = np.radians(c.antenna_tilt)
    return base, base + c.antenna_len * np.array([-np.sin(t), 0.0, np.cos(t)])


class _Mesh(NamedTuple):
    """All faces of a car flattened for vectorised transforms; the last is the antenna."""

    pts: np.ndarray     # (V, 3) the faces' vertices, face after face
    start: np.ndarray   # (F + 1,) face i owns pts[start[i]:start[i + 1]]
    normal: np.ndarray  # (F, 3)
    centre: np.ndarray  # (F, 3)
    mat: np.ndarray     # (F,)


@functools.lru_cache(maxsize=16)
def _car_mesh(c: CarParams) -> _Mesh:
    faces = _car_faces(c)
    faces.append(Face(np.stack(_antenna(c)), DARK, np.array([0.0, 0.0, 1.0])))
    start = np.cumsum([0] + [len(f.pts) for f in faces])
    return _Mesh(np.concatenate([f.pts for f in faces]), start,
                 np.array([f.normal for f in faces]), np.array([f.pts.mean(0) for f in faces]),
                 np.array([f.mat for f in faces]))


# ----------------------------------------------------------------------------- raster


def _camera(h: int, w: int) -> _Camera:
    e = np.radians(_CAM_ELEV)
    target = np.array([0.0, 0.0, _CAM_TARGET_Z])
    pos = target + _CAM_DIST * np.array([np.cos(e), 0.0, np.sin(e)])
    fwd = (target - pos) / _CAM_DIST
    right = np.array([0.0, 1.0, 0.0])
    up = np.cross(right, fwd)
    focal = 0.80 * w * _CAM_DIST / 4.8  # a 4.8 m car seen side-on spans 80 % of the width
    return _Camera(pos, right, up, fwd, focal, w / 2 - 0.5, _CAM_CY * h - 0.5)


def _project(cam: _Camera, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rel = p - cam.pos  # (N, 3) world
    z = rel @ cam.fwd
    x = cam.cx + cam.focal * (rel @ cam.right) / z
    y = cam.cy - cam.focal * (rel @ cam.up) / z
    return np.stack([x, y], axis=1), z


class _Raster:
    """Z-buffer of inverse depth and the index of the face seen at each pixel."""

    def __init__(self, cam: _Camera, h: int, w: int) -> None:
        self.cam, self.h, self.w = cam, h, w
        self.inv = np.zeros((h, w), np.float32)
        self.fid = np.full((h, w), -1, np.int16)
        self.box = (w, h, 0, 0)  # union of everything drawn: x0, y0, x1, y1

    def _bbox(self, uv: np.ndarray, pad: int = 0) -> tuple[int, int, int, int] | None:
        x0, y0 = np.floor(uv.min(axis=0)).astype(int) - pad
        x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 1 + pad
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def _grid(self, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        x0, y0, x1, y1 = box
        c = self.cam
        xs = (np.arange(x0, x1, dtype=np.float32) - np.float32(c.cx)) / np.float32(c.focal)
        ys = (np.arange(y0, y1, dtype=np.float32) - np.float32(c.cy)) / np.float32(c.focal)
        return xs[None, :], ys[:, None]

    def _write(self, box: tuple[int, int, int, int], cover: np.ndarray, inv: np.ndarray,
               idx: int) -> None:
        x0, y0, x1, y1 = box
        zb = self.inv[y0:y1, x0:x1]
        sel = cover.view(bool) & (inv > zb)
        np.copyto(zb, inv, where=sel)
        np.copyto(self.fid[y0:y1, x0:x1], np.int16(idx), where=sel)
        b = self.box
        self.box = (min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1))

    def crop(self, step: int) -> tuple[slice, slice]:
        """The drawn region, widened to multiples of ``step`` (for exact downsampling)."""
        x0, y0, x1, y1 = self.box
        x1, y1 = max(x1, x0), max(y1, y0)
        x0, y0 = x0 // step * step, y0 // step * step
        x1, y1 = -(-x1 // step) * step, -(-y1 // step) * step
        return np.s_[y0:y1, x0:x1]

    def height(self, crop: tuple[slice, slice]) -> np.ndarray:
        """World height of the surface seen at each pixel of ``crop`` (hits only)."""
        c = self.cam
        ys = (np.arange(crop[0].start, crop[0].stop, dtype=np.float32) - c.cy) / c.focal
        ray_z = (c.fwd[2] - c.up[2] * ys).astype(np.float32)[:, None]
        return np.float32(c.pos[2]) + ray_z / np.maximum(self.inv[crop], np.float32(1e-6))

    def polygon(self, uv: np.ndarray, p0: np.ndarray, normal: np.ndarray, idx: int) -> None:
        """Fill a planar polygon (projected ``uv``, through ``p0``); exact depth per pixel."""
        box = self._bbox(uv)
        if box is None:
            return
        x0, y0, x1, y1 = box
        cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = np.round((uv - (x0, y0)) * 16).astype(np.int32)
        cv2.fillPoly(cover, [pts], 1, cv2.LINE_8, shift=4)
        c = self.cam
        gx, gy = self._grid(box)
        nf, nr, nu = (np.float32(normal @ v) for v in (c.fwd, c.right, c.up))
        ray_n = nf + nr * gx - nu * gy                                    # n . ray
        inv = ray_n * np.float32(1 / float(normal @ (p0 - c.pos)))        # 1 / depth
        self._write(box, cover, inv, idx)

    def line(self, uv: np.ndarray, depth: np.ndarray, thickness: int, idx: int) -> None:
        """A thick segment (the antenna); inverse depth interpolated along it."""
        box = self._bbox(uv, pad=thickness)
        if box is None:
            return
        x0, y0, x1, y1 = box
        cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
        p = np.round((uv - (x0, y0)) * 16).astype(np.int32)
        cv2.line(cover, tuple(p[0]), tuple(p[1]), 1, thickness, cv2.LINE_8, shift=4)
        gx = np.arange(x0, x1, dtype=np.float32)[None, :] - uv[0, 0]
        gy = np.arange(y0, y1, dtype=np.float32)[:, None] - uv[0, 1]
        d = uv[1] - uv[0]
        t = np.clip((gx * d[0] + gy * d[1]) / max(float(d @ d), 1e-6), 0, 1)
        inv = ((1 - t) / depth[0] + t / depth[1]).astype(np.float32)
        self._write(box, cover, inv, idx)


# ----------------------------------------------------------------------------- shading


def _studio(backdrop: float, cam: _Camera, h: int, w: int) -> np.ndarray:
    """Grey wall with a vertical gradient, a lighter floor, and a soft seam between."""
    uv, _ = _project(cam, np.array([[-_WALL_DIST, 0.0, 0.0]]))
    horizon = float(uv[0, 1])
    y = np.arange(h, dtype=np.float32)[:, None]
    t_wall = np.clip(y / max(horizon, 1.0), 0, 1)
    t_floor = np.clip((y - horizon) / max(h - horizon, 1.0), 0, 1)
    wall = 232 - 20 * t_wall
    floor = 204 + 20 * t_floor
    grey = np.where(y < horizon, wall, floor) + backdrop
    grey = grey - 14 * np.exp(-(((y - horizon) / (0.004 * h)) ** 2))
    x = (np.arange(w, dtype=np.float32)[None, :] - cam.cx) / max(cam.cx, 1.0)
    grey = grey * (1 - 0.07 * x**2)                              # (H, W) vignette
    tint = np.where(y < horizon, 1.0, 0.985)[..., None] * np.array([1.0, 1.0, 0.975])
    return (grey[..., None] * tint).astype(np.float32)            # (H, W, 3)


def _shadow(car: CarParams, cam: _Camera, yaw: np.ndarray, h: int, w: int) -> np.ndarray:
    """Darkening factor (H, W) of the floor under the car: wide penumbra + dark core."""
    q = 2  # work at half resolution; it is blurred anyway
    hq, wq = -(-h // q), -(-w // q)
    out = np.zeros((hq, wq), np.float32)
    scale = cam.focal / q / _CAM_DIST
    for grow, sigma, strength in ((0.3, 0.35, 0.25), (0.0, 0.10, 0.40), (-0.2, 0.05, 0.30)):
        lx, ly = car.length / 2 + grow, car.width / 2 + grow
        corners = np.array([(lx, ly, 0), (-lx, ly, 0), (-lx, -ly, 0), (lx, -ly, 0)]) @ yaw.T
        uv, _ = _project(cam, corners)
        layer = np.zeros_like(out)
        cv2.fillPoly(layer, [np.round((uv + 0.5) / q * 16 - 8).astype(np.int32)], strength,
                     cv2.LINE_8, shift=4)
        out += cv2.GaussianBlur(layer, (0, 0), max(sigma * scale, 0.5))
    full = cv2.resize(np.minimum(out, 0.85), (wq * q, hq * q), interpolation=cv2.INTER_LINEAR)
    return full[:h, :w]


def _face_terms(car: CarParams, mesh: _Mesh, yaw: np.ndarray,
                cam: _Camera) -> tuple[np.ndarray, ...]:
    """Per face: diffuse colour (F, 3), specular (F,), painted, side and glass flags (F,)."""
    n = mesh.normal @ yaw.T                                    # (F, 3) world normals
    view = cam.pos - mesh.centre @ yaw.T
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    lit = 0.36 + 0.42 * np.maximum(n @ _LIGHT, 0) + 0.22 * np.maximum((n * view).sum(1), 0)
    refl = 2 * (n @ _LIGHT)[:, None] * n - _LIGHT
    mats = mesh.mat
    spec = _MAT_SPEC[mats] * np.maximum((refl * view).sum(1), 0) ** 12
    base = _MAT_RGB.copy()
    base[PAINT] = car.color
    diffuse = base[mats] * lit[:, None]
    paint, glass = mats == PAINT, mats == GLASS
    diffuse[glass] += 0.15 * _STUDIO_GREY  # glass: a glimpse of the far side through it
    side = paint & (np.abs(n[:, 2]) < 0.5)
    return tuple(a.astype(np.float32) for a in (diffuse, 255 * spec, paint, side, glass))


def _shade(car: CarParams, mesh: _Mesh, r: _Raster, yaw: np.ndarray,
           crop: tuple[slice, slice]) -> np.ndarray:
    """Colour (h, w, 3) float32 of the raster inside ``crop``; zero where no car is seen.

    Written with in-place operations: fresh large temporaries cost page faults.
    """
    diffuse, spec, paint, side, glass = _face_terms(car, mesh, yaw, r.cam)
    fid = r.fid[crop]
    hit = (fid >= 0).astype(np.float32)
    fi = np.maximum(fid, 0)
    hgt = r.height(crop)                                          # (h, w) world z
    t = hgt - np.float32(car.clearance)                           # paint: darker low down
    t *= np.float32(0.3 / (car.body_top - car.clearance))
    np.clip(t, -0.22, 0.17, out=t)
    gain = np.take(paint, fi)
    gain *= t
    gain += 1
    gain *= hit
    np.subtract(hgt, np.float32(car.body_top - 0.07), out=t)      # paint: shoulder highlight
    t *= np.float32(1 / 0.035)
    np.square(t, out=t)
    np.exp(-t, out=t)
    t *= np.take(side, fi)
    extra = np.take(spec, fi)
    extra += 60 * t
    gx = np.arange(crop[1].start, crop[1].stop, dtype=np.float32)[None, :]
    gy = np.arange(crop[0].start, crop[0].stop, dtype=np.float32)[:, None]
    np.add(gx, 0.6 * gy, out=t)                                   # glass: diagonal reflections
    t *= np.float32(2 * np.pi / (0.12 * r.w))
    np.sin(t, out=t)
    np.clip(t, 0, 1, out=t)
    np.square(t, out=t)
    t *= np.take(glass, fi)
    extra += 30 * t
    extra *= hit
    col = np.take(diffuse, fi, axis=0)
    col *= gain[..., None]
    col += extra[..., None]
    return col


def _yaw_matrix(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _rasterise(mesh: _Mesh, yaw: np.ndarray, h: int, w: int) -> _Raster:
    """Z-buffer every face turned towards the camera, then the antenna (the last face)."""
    cam = _camera(h, w)
    raster = _Raster(cam, h, w)
    pts, normal = mesh.pts @ yaw.T, mesh.normal @ yaw.T        # world, (V, 3) and (F, 3)
    uv, depth = _project(cam, pts)
    first = pts[mesh.start[:-1]]
    facing = np.einsum("ij,ij->i", normal, cam.pos - first) > 0  # back faces are never seen
    for i in np.flatnonzero(facing[:-1]):
        raster.polygon(uv[mesh.start[i]:mesh.start[i + 1]], first[i], normal[i], int(i))
    a = mesh.start[-2]
    raster.line(uv[a:a + 2], depth[a:a + 2], max(3, round(0.004 * w)), len(mesh.mat) - 1)
    return raster


def _downsample(car: CarParams, mesh: _Mesh, r: _Raster,
                yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased car colour (premultiplied) and coverage at output resolution."""
    k = SUPERSAMPLE
    h, w = r.h // k, r.w // k
    rgb, cover = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    crop = r.crop(k)
    ch, cw = crop[0].stop - crop[0].start, crop[1].stop - crop[1].start
    if ch == 0 or cw == 0:
        return rgb, cover
    small = np.s_[crop[0].start // k:crop[0].stop // k, crop[1].start // k:crop[1].stop // k]
    size = (cw // k, ch // k)
    rgb[small] = cv2.resize(_shade(car, mesh, r, yaw, crop), size, interpolation=cv2.INTER_AREA)
    hit = (r.fid[crop] >= 0).astype(np.float32)
    cover[small] = cv2.resize(hit, size, interpolation=cv2.INTER_AREA)
    return rgb, cover


@functools.lru_cache(maxsize=4)
def _studio_cached(backdrop: float, h: int, w: int) -> np.ndarray:
    out = _studio(backdrop, _camera(h, w), h, w)
    out.flags.writeable = False
    return out


def render_view(car: CarParams, view: int, size: tuple[int, int],
                yaw_deg: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render ``car`` in Carvana view ``view`` (1..16; 01 faces the camera, 09 shows the back).

    ``size`` is (height, width). ``yaw_deg`` overrides the view's turntable angle
    ((view - 1) * 22.5°) and may be fractional, e.g. for a video of the car turning.
    Returns the RGB image (H, W, 3) uint8 and the mask (H, W) uint8 in {0, 255}.
    """
    h, w = size
    if yaw_deg is None and not 1 <= view <= VIEWS:
        raise ValueError(f"view must be 1..{VIEWS} (or pass yaw_deg), got {view}")
    yaw_deg = (view - 1) * 360.0 / VIEWS if yaw_deg is None else float(yaw_deg)
    yaw = _yaw_matrix(yaw_deg)
    mesh = _car_mesh(car)
    raster = _rasterise(mesh, yaw, h * SUPERSAMPLE, w * SUPERSAMPLE)
    rgb, cover = _downsample(car, mesh, raster, yaw)
    shadow = _shadow(car, _camera(h, w), yaw, h, w)
    img = _studio_cached(car.backdrop, h, w) * (1 - shadow * (1 - cover))[..., None]
    img *= (1 - cover)[..., None]
    img += rgb
    rng = np.random.default_rng([car.noise_seed, view % 2**31, round(yaw_deg * 1000) % 2**31])
    img += 7.6 * (rng.random(img.shape, dtype=np.float32) - 0.5)  # sensor noise, sd 2.2
    mask = np.where(cover >= 0.5, 255, 0).astype(np.uint8)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask


# ----------------------------------------------------------------------------- dataset


def car_id(seed: int, index: int) -> str:
    """The 12-hex-digit id of car ``index`` of the dataset made with ``seed``."""
    return hashlib.blake2b(f"lkmseg-synth:{seed}:{index}".encode(), digest_size=6).hexdigest()


def car_of(seed: int, index: int) -> CarParams:
    """Car ``index`` of the dataset made with ``seed`` (independent of the other cars)."""
    return random_car(np.random.default_rng([seed, index]))


def _save_pair(img: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise OSError(f"cannot encode {image_path.name}")
    image_path.write_bytes(jpg.tobytes())
    Image.fromarray(mask, mode="L").save(mask_path, format="GIF")


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]synthetic cars"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


def _generate(root: Path, cars: int, views: int, size: tuple[int, int], seed: int,
              progress: bool) -> None:
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    with _progress(progress) as bar:
        task = bar.add_task("render", total=cars * views)
        for i in range(cars):
            car, cid = car_of(seed, i), car_id(seed, i)
            for v in range(1, views + 1):
                img, mask = render_view(car, v, size, yaw_deg=(v - 1) * 360.0 / views)
                _save_pair(img, mask, root / "train" / f"{cid}_{v:02d}.jpg",
                           root / "train_masks" / f"{cid}_{v:02d}_mask.gif")
                bar.advance(task)


def _check_args(cars: int, views: int, size: tuple[int, int]) -> None:
    if cars < 1 or not 1 <= views <= 99:
        raise UserError(f"synthetic data needs cars >= 1 and 1 <= views <= 99 "
                        f"(got cars={cars}, views={views})")
    if min(size) < 16:
        raise UserError(f"synthetic image size {size[0]}x{size[1]} is too small; use >= 16x16")


def write_synthetic(out: Path, cars: int = 12, views: int = 16,
                    size: tuple[int, int] = (320, 480), seed: int = 0,
                    progress: bool = True) -> Path:
    """Write ``cars`` x ``views`` images (``size`` = (height, width)) in the Carvana layout.

    ``out/train/<id>_<NN>.jpg`` (JPEG quality 92) and ``out/train_masks/<id>_<NN>_mask.gif``
    (0/255). Everything is written into a hidden sibling folder that is renamed to ``out``
    at the end, so an interrupted run never leaves half a dataset. ``out`` must not exist
    (an empty folder is fine). Same arguments, byte-identical files.
    """
    out = Path(out)
    _check_args(cars, views, size)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists; remove it or choose another folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}; choose another folder") from e
    try:
        _generate(tmp, cars, views, size, seed, progress)
        os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if out.is_dir() and any(out.iterdir()):  # someone else wrote ``out`` meanwhile
            raise UserError(f"{out} already exists; remove it or choose another folder") from e
        raise UserError(f"cannot write {out}: {e.strerror or e}; choose another folder") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _complete(root: Path, cars: int, views: int) -> bool:
    n = cars * views
    return (len(list((root / "train").glob("*.jpg"))) == n
            and len(list((root / "train_masks").glob("*_mask.gif"))) == n)


def dataset_name(cars: int = 12, views: int = 16, size: tuple[int, int] = (320, 480),
                 seed: int = 0) -> str:
    """Cache folder name; it changes whenever the generator's output would."""
    return f"synth-v{GENERATOR_VERSION}-c{cars}-v{views}-{size[0]}x{size[1]}-s{seed}"


def default_dataset(cache_dir: Path | None = None, *, cars: int = 12, views: int = 16,
                    size: tuple[int, int] = (320, 480), seed: int = 0,
                    progress: bool = True) -> Path:
    """The embedded dataset used when no data is given: generated once, then reused.

    Lives in ``cache_dir`` or ``$LKMSEG_CACHE`` or ``~/.cache/lkmseg``. Two processes
    may generate it at once: each writes its own temporary folder; the first rename wins
    and the other copy is discarded.
    """
    root = Path(cache_dir or os.environ.get("LKMSEG_CACHE") or Path.home() / ".cache" / "lkmseg")
    target = root / dataset_name(cars, views, size, seed)
    if target.is_dir() and _complete(target, cars, views):
        return target
    if target.exists():  # damaged (files deleted by hand): move it aside, then rebuild
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return write_synthetic(target, cars, views, size, seed, progress)
    except UserError:
        if target.is_dir() and _complete(target, cars, views):
            return target  # another process finished first
        raise
