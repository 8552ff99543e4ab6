"""Rendering a car in a studio: camera, z-buffer rasteriser, shading, shadow, one view."""

from __future__ import annotations

import functools
from typing import NamedTuple

import cv2
import numpy as np

from lkmseg.data.synth.geometry import (
    GLASS,
    MAT_RGB,
    MAT_SPEC,
    PAINT,
    SUPERSAMPLE,
    VIEWS,
    CarParams,
    Mesh,
    car_mesh,
)

# studio: fixed camera looking at the turntable centre (metres, degrees)
_CAM_DIST, _CAM_ELEV, _CAM_TARGET_Z, _WALL_DIST = 9.0, 9.0, 0.62, 5.0
_CAM_CY = 0.53  # the turntable centre sits this far down the frame
_STUDIO_GREY = 215.0
_LIGHT = np.array([0.45, 0.35, 1.0]) / np.linalg.norm([0.45, 0.35, 1.0])


class _Camera(NamedTuple):
    pos: np.ndarray
    right: np.ndarray
    up: np.ndarray
    fwd: np.ndarray
    focal: float
    cx: float
    cy: float



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


def _face_terms(car: CarParams, mesh: Mesh, yaw: np.ndarray,
                cam: _Camera) -> tuple[np.ndarray, ...]:
    """Per face: diffuse colour (F, 3), specular (F,), painted, side and glass flags (F,)."""
    n = mesh.normal @ yaw.T                                    # (F, 3) world normals
    view = cam.pos - mesh.centre @ yaw.T
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    lit = 0.36 + 0.42 * np.maximum(n @ _LIGHT, 0) + 0.22 * np.maximum((n * view).sum(1), 0)
    refl = 2 * (n @ _LIGHT)[:, None] * n - _LIGHT
    mats = mesh.mat
    spec = MAT_SPEC[mats] * np.maximum((refl * view).sum(1), 0) ** 12
    base = MAT_RGB.copy()
    base[PAINT] = car.color
    diffuse = base[mats] * lit[:, None]
    paint, glass = mats == PAINT, mats == GLASS
    diffuse[glass] += 0.15 * _STUDIO_GREY  # glass: a glimpse of the far side through it
    side = paint & (np.abs(n[:, 2]) < 0.5)
    return tuple(a.astype(np.float32) for a in (diffuse, 255 * spec, paint, side, glass))


def _shade(car: CarParams, mesh: Mesh, r: _Raster, yaw: np.ndarray,
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


def _rasterise(mesh: Mesh, yaw: np.ndarray, h: int, w: int) -> _Raster:
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


def _downsample(car: CarParams, mesh: Mesh, r: _Raster,
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
    mesh = car_mesh(car)
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
