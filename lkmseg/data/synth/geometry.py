"""The synthetic cars' geometry: seeded car parameters and their 3-D mesh (planar faces)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

GENERATOR_VERSION = 1
VIEWS = 16
SUPERSAMPLE = 2
# materials
PAINT, GLASS, TIRE, RIM, DARK, HEADLIGHT, TAILLIGHT, PLATE = range(8)
MAT_RGB = np.array([(0, 0, 0), (22, 27, 33), (30, 30, 32), (178, 180, 184), (16, 16, 18),
                     (236, 238, 240), (165, 18, 24), (226, 226, 216)], np.float32)
MAT_SPEC = np.array([0.35, 0.55, 0.05, 0.4, 0.08, 0.3, 0.3, 0.05], np.float32)
_PALETTE = [((236, 236, 234), 0.22), ((22, 22, 24), 0.18), ((172, 175, 180), 0.16),
            ((98, 100, 105), 0.12), ((158, 22, 28), 0.08), ((28, 52, 118), 0.08),
            ((18, 26, 56), 0.05), ((32, 70, 46), 0.04), ((190, 174, 146), 0.04),
            ((208, 98, 22), 0.03)]
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


class Mesh(NamedTuple):
    """All faces of a car flattened for vectorised transforms; the last is the antenna."""

    pts: np.ndarray     # (V, 3) the faces' vertices, face after face
    start: np.ndarray   # (F + 1,) face i owns pts[start[i]:start[i + 1]]
    normal: np.ndarray  # (F, 3)
    centre: np.ndarray  # (F, 3)
    mat: np.ndarray     # (F,)


@functools.lru_cache(maxsize=16)
def car_mesh(c: CarParams) -> Mesh:
    faces = _car_faces(c)
    faces.append(Face(np.stack(_antenna(c)), DARK, np.array([0.0, 0.0, 1.0])))
    start = np.cumsum([0] + [len(f.pts) for f in faces])
    return Mesh(np.concatenate([f.pts for f in faces]), start,
                 np.array([f.normal for f in faces]), np.array([f.pts.mean(0) for f in faces]),
                 np.array([f.mat for f in faces]))
