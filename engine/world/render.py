"""Render a scene to frames, anti-aliased by rendering at 4x and box-filtering down (docs/world.md)."""

from __future__ import annotations

import numpy as np

from .palette import COLORS
from .scene import Pattern, Scene, ShapeObject

SUPERSAMPLE = 4


def _star_vertices(cx: float, cy: float, r: float) -> np.ndarray:
    # 10 vertices alternating outer (r) and inner (0.45 r) radius, first point straight up.
    ang = -np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], -1)


def _inside_polygon(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points."""
    inside = np.zeros(np.broadcast(px, py).shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x0, y0 = verts[i]
        x1, y1 = verts[(i + 1) % n]
        crosses = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xin = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < xin)
    return inside


def shape_mask(shape: str, px: np.ndarray, py: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean coverage of the shape (centre cx, cy, half box side r) at points px, py."""
    dx, dy = px - cx, py - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "triangle":
        # One vertex up, the base along the bottom of the bounding box.
        verts = np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
        return _inside_polygon(px, py, verts)
    if shape == "star":
        return _inside_polygon(px, py, _star_vertices(cx, cy, r))
    raise ValueError(f"unknown shape {shape!r}")


def pattern_second(pattern: Pattern, px: np.ndarray, py: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """True where a character's pattern shows its second colour."""
    p = max(pattern.period * r, 1e-6)
    u, v = (px - cx) / p, (py - cy) / p
    if pattern.kind == "hstripes":
        return np.floor(v) % 2 == 1
    if pattern.kind == "vstripes":
        return np.floor(u) % 2 == 1
    if pattern.kind == "diagonal":
        return np.floor((u + v) / np.sqrt(2)) % 2 == 1
    if pattern.kind == "checker":
        return (np.floor(u) + np.floor(v)) % 2 == 1
    if pattern.kind == "dots":
        fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        return fu * fu + fv * fv <= 0.3**2
    raise ValueError(f"unknown pattern {pattern.kind!r}")


def _draw_object(canvas: np.ndarray, obj: ShapeObject, cx: float, cy: float, r: float) -> None:
    """Composite one object into canvas (R, R, 3) float, in place, over its bounding box only."""
    R = canvas.shape[0]
    S = SUPERSAMPLE
    # Pixel rows/cols touched by the bounding box (+1 px margin).
    x0, x1 = max(int(np.floor((cx - r) * R)) - 1, 0), min(int(np.ceil((cx + r) * R)) + 1, R)
    y0, y1 = max(int(np.floor((cy - r) * R)) - 1, 0), min(int(np.ceil((cy + r) * R)) + 1, R)
    if x1 <= x0 or y1 <= y0:
        return
    # Sub-sample centres, in normalised coordinates.
    xs = (np.arange(x0 * S, x1 * S) + 0.5) / (R * S)
    ys = (np.arange(y0 * S, y1 * S) + 0.5) / (R * S)
    px, py = np.meshgrid(xs, ys)
    mask = shape_mask(obj.shape, px, py, cx, cy, r).astype(np.float32)  # (h*S, w*S)
    color = np.array(COLORS[obj.color], np.float32)
    if obj.pattern is None:
        rgb = mask[..., None] * color
    else:
        second = pattern_second(obj.pattern, px, py, cx, cy, r)[..., None]
        rgb = mask[..., None] * np.where(second, np.array(COLORS[obj.pattern.color2], np.float32), color)
    h, w = y1 - y0, x1 - x0
    alpha = mask.reshape(h, S, w, S).mean((1, 3))[..., None]  # box filter
    premult = rgb.reshape(h, S, w, S, 3).mean((1, 3))
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = region * (1 - alpha) + premult


def clip_times(frames: int) -> np.ndarray:
    """Clip time s in [0, 1] of each frame; a single frame is the start of the clip."""
    return np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)


def render(scene: Scene, size: int = 64, frames: int = 32) -> np.ndarray:
    """Frames (T, R, R, 3) uint8 of the scene."""
    s = clip_times(frames)
    bg = np.array(COLORS[scene.background], np.float32)
    out = np.empty((frames, size, size, 3), np.uint8)
    tracks = [(o, *o.centre(s), o.size(s)) for o in scene.objects]
    for f in range(frames):
        canvas = np.broadcast_to(bg, (size, size, 3)).copy()
        for obj, xs, ys, rs in tracks:  # later objects are drawn over earlier ones
            _draw_object(canvas, obj, float(xs[f]), float(ys[f]), float(rs[f]))
        out[f] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return out


def render_reference(
    obj: ShapeObject, background: str, size: int = 64, cx: float = 0.5, cy: float = 0.5, r: float = 0.3
) -> np.ndarray:
    """A character's reference image (R, R, 3): alone on a plain background; by default centred
    at r = 0.3, as docs/world.md describes (other places and sizes: what users upload)."""
    canvas = np.broadcast_to(np.array(COLORS[background], np.float32), (size, size, 3)).copy()
    _draw_object(canvas, obj, cx, cy, r)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
