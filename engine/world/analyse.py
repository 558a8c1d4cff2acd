"""Read a clip back into the world's terms: background colour and objects (colour, shape,
centre and size per frame, motion). Every quality figure of the project is measured with it.

Which colours are present is decided on pixels labelled with their nearest palette colour, with
anti-aliased blends (far from every palette entry) dropped and a 1-pixel erosion removing thin
rings of blends that land near a third colour. Each object's shape and position are then read
from its coverage: every pixel as a mix of background and object colour, counted where the object
covers at least half of it, so soft or blurred edges do not eat thin parts. The shape is the
template (circle, square, triangle, star) that overlaps that coverage best once each template's
place and size are fitted, voted over the frames where the object shows most; an object that fits
no template well is "unclear".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .palette import COLOR_NAMES, DIRECTIONS, MOTIONS, PALETTE, SHAPES, nearest_color_index
from .render import clip_times, shape_mask
from .scene import Scene, ShapeObject

MAX_COLOR_DISTANCE = 60.0  # in 0..255 RGB units
MIN_PIXELS = 0.0015  # of the frame, after erosion (~6 px at 64x64)
MOVE_THRESHOLD = 0.2  # of the canvas, over the clip (true moves travel 0.5)
GROW_THRESHOLD = 0.06  # change of r over the clip (true growth is 0.14)
# Below this IoU with its best template an object's shape is "unclear" and matches no prompt:
# every correctly read object of true clips, clean or through the TAE, fits at >= 0.8.
MIN_SHAPE_FIT = 0.7
UNCLEAR = "unclear"


@dataclass
class ObjectTrack:
    color: str
    shape: str
    motion: str
    centres: np.ndarray  # (T, 2) x, y; NaN where not visible
    sizes: np.ndarray  # (T,) half side of the bounding box
    area: float = 0.0  # mean fraction of the frame
    shape_fit: float = 1.0  # mean IoU of the voting frames with the chosen shape's template


@dataclass
class Analysis:
    background: str
    objects: list[ObjectTrack] = field(default_factory=list)


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 erosion of (..., H, W) boolean masks."""
    p = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    out = mask.copy()
    h, w = mask.shape[-2:]
    for dy in range(3):
        for dx in range(3):
            out &= p[..., dy : dy + h, dx : dx + w]
    return out


def _unit_moments(n: int = 600) -> dict[str, tuple[float, float, float]]:
    """Per shape at r = 1: area, and the centroid's offset (x, y) from the bounding box centre."""
    ys, xs = (np.mgrid[0:n, 0:n] + 0.5) / n * 2.4 - 1.2
    out = {}
    for shape in SHAPES:
        m = shape_mask(shape, xs, ys, 0.0, 0.0, 1.0)
        out[shape] = (float(m.sum()) * (2.4 / n) ** 2, float(xs[m].mean()), float(ys[m].mean()))
    return out


UNIT_MOMENTS = _unit_moments()
# Each template is placed twice (by the mask's area and centroid, and by its bounding box) and then
# nudged by these scales and pixel shifts, so a lopsided point, a stray pixel or a slightly
# squashed side does not hand the match to the circle, the most forgiving template.
FIT_SCALES = (0.88, 0.94, 1.0, 1.06, 1.12)
FIT_SHIFTS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])  # in pixels


def _classify_shape(mask: np.ndarray, R: int, hidden: np.ndarray | None = None) -> tuple[str, float]:
    """Best-matching shape (by IoU after fitting each template's place and size) for an (R, R)
    mask. Pixels in `hidden` (covered by another object) count for no template: an object drawn
    over this one may hide any part of it."""
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
    pad = int(0.2 * R) + 2
    win = (slice(max(y0 - pad, 0), min(y1 + pad + 1, R)), slice(max(x0 - pad, 0), min(x1 + pad + 1, R)))
    sub = mask[win]
    visible = np.ones_like(sub) if hidden is None else ~hidden[win]
    outside = mask.sum() - sub.sum()  # 0 unless the window clips the mask
    gy, gx = (np.mgrid[win] + 0.5) / R
    d = FIT_SHIFTS / R
    px, py = np.broadcast_arrays(gx - d[:, None, None, None], gy - d[None, :, None, None])  # (S, S, h, w)
    area, mx, my = len(xs) / R**2, (xs.mean() + 0.5) / R, (ys.mean() + 0.5) / R
    bx, by, br = (x0 + x1 + 1) / 2 / R, (y0 + y1 + 1) / 2 / R, max(x1 - x0 + 1, y1 - y0 + 1) / 2 / R
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        k, ox, oy = UNIT_MOMENTS[shape]
        r_area = np.sqrt(area / k)
        # A star's outer radius is r but its box is 0.95 r wide and 0.9 r tall, 0.05 r low.
        r_box = br / 0.95 if shape == "star" else br
        placements = (
            (mx - ox * r_area, my - oy * r_area, r_area),
            (bx, by + (0.05 * r_box if shape == "star" else 0), r_box),
        )
        for cx, cy, r0 in placements:
            for scale in FIT_SCALES:
                tmpl = shape_mask(shape, px, py, cx, cy, r0 * scale) & visible
                inter = (tmpl & sub).sum((-2, -1))
                union = (tmpl | sub).sum((-2, -1)) + outside
                iou = float((inter / np.maximum(union, 1)).max())
                if iou > best_iou:
                    best, best_iou = shape, iou
    return best, best_iou


def _motion(centres: np.ndarray, sizes: np.ndarray) -> str:
    ok = ~np.isnan(centres[:, 0])
    if ok.sum() < 2:
        return "still"
    s = clip_times(len(centres))[ok]
    slope = lambda v: np.polyfit(s, v, 1)[0]  # noqa: E731 - change over the whole clip
    growth = slope(sizes[ok])
    dx, dy = slope(centres[ok, 0]), slope(centres[ok, 1])
    if abs(growth) > GROW_THRESHOLD and abs(growth) > 0.4 * max(abs(dx), abs(dy)):
        return "growing" if growth > 0 else "shrinking"
    if max(abs(dx), abs(dy)) > MOVE_THRESHOLD:
        vec = (np.sign(dx), 0.0) if abs(dx) >= abs(dy) else (0.0, np.sign(dy))
        return next(k for k, v in DIRECTIONS.items() if v == vec)
    return "still"


def _coverage_masks(frames: np.ndarray, bg: int, colors: list[int]) -> list[np.ndarray]:
    """Per object colour, the pixels it covers at least half of (T, H, W) bool.

    Each pixel is explained as a mix of the background and one object colour: its coverage
    (alpha) is its projection on the background -> colour segment. Anti-aliased and blurred edges
    then count by how much they are covered, so thin parts (star points, triangle tips) survive.
    """
    if not colors:
        return []
    p = frames.astype(np.float32)
    b = PALETTE[bg]
    alphas, resid = [], []
    for c in colors:
        d = PALETTE[c] - b
        a = np.clip(((p - b) @ d) / (d @ d), 0.0, 1.0)  # (T, H, W)
        alphas.append(a)
        resid.append(np.linalg.norm(p - (b + a[..., None] * d), axis=-1))
    alphas, resid = np.stack(alphas), np.stack(resid)  # (K, T, H, W)
    owner = resid.argmin(0)
    return [(owner == k) & (alphas[k] >= 0.5) & (resid[k] < MAX_COLOR_DISTANCE) for k in range(len(colors))]


def analyse(frames: np.ndarray, max_objects: int = 2) -> Analysis:
    """frames (T, H, W, 3) uint8 -> Analysis."""
    T, R = frames.shape[0], frames.shape[1]
    labels, dist = nearest_color_index(frames)  # (T, H, W)
    labels = np.where(dist < MAX_COLOR_DISTANCE, labels, -1)
    counts = np.bincount(labels[labels >= 0].ravel(), minlength=len(COLOR_NAMES))
    bg = int(counts.argmax())
    candidates = []
    for c in range(len(COLOR_NAMES)):
        if c == bg or counts[c] == 0:
            continue
        mask = labels == c  # (T, H, W)
        core = _erode(mask).sum((1, 2)) / (R * R)
        present = core >= MIN_PIXELS
        if present.mean() >= 0.5:
            candidates.append((float(core.mean()), c, mask, present))
    candidates.sort(reverse=True)
    candidates = candidates[:max_objects]
    masks = _coverage_masks(frames, bg, [c for _, c, _, _ in candidates])
    objects = []
    for (area, c, _, present), mask in zip(candidates, masks, strict=True):
        centres = np.full((T, 2), np.nan)
        sizes = np.full(T, np.nan)
        boxes = {}
        for f in np.flatnonzero(present):
            ys, xs = np.nonzero(mask[f])
            if len(xs) == 0:  # present by colour, but nowhere covered by half: unreadable frame
                continue
            box = (xs.min(), ys.min(), xs.max(), ys.max())
            boxes[f] = box
            centres[f] = ((box[0] + box[2] + 1) / 2 / R, (box[1] + box[3] + 1) / 2 / R)
            sizes[f] = max(box[2] - box[0] + 1, box[3] - box[1] + 1) / 2 / R
        # Vote the shape over a few of the frames where the object is largest.
        best = sorted(boxes, key=lambda f: -mask[f].sum())[:5]
        votes: dict[str, list[float]] = {}
        others = np.zeros_like(mask) if len(masks) == 1 else np.any([m for m in masks if m is not mask], 0)
        for f in best:
            shape, iou = _classify_shape(mask[f], R, hidden=others[f])
            votes.setdefault(shape, []).append(iou)
        shape = max(votes, key=lambda k: sum(votes[k])) if votes else UNCLEAR
        fit = float(np.mean(votes[shape])) if votes else 0.0
        if fit < MIN_SHAPE_FIT:
            shape = UNCLEAR
        objects.append(ObjectTrack(COLOR_NAMES[c], shape, _motion(centres, sizes), centres, sizes, area, fit))
    return Analysis(COLOR_NAMES[bg], objects)


@dataclass
class Score:
    background: bool
    color: list[bool]
    shape: list[bool]
    motion: list[bool]
    extra_objects: int

    @property
    def satisfied(self) -> bool:
        return self.background and all(self.color + self.shape + self.motion) and self.extra_objects == 0


def score(analysis: Analysis, scene: Scene, image: bool = False) -> Score:
    """Compare an analysis with the scene the prompt described (match objects by colour first)."""
    found = {o.color: o for o in analysis.objects}
    unmatched = [o for o in analysis.objects if o.color not in {e.color for e in scene.objects}]
    color, shape, motion = [], [], []
    for exp in scene.objects:
        got = found.get(exp.color)
        color.append(got is not None)
        if got is None and unmatched:
            got = unmatched.pop(0)
        shape.append(got is not None and got.shape == exp.shape)
        motion.append(got is not None and (image or got.motion == exp.motion))
    extra = max(len(analysis.objects) - len(scene.objects), 0)
    return Score(analysis.background == scene.background, color, shape, motion, extra)


def source_scene(frames: np.ndarray) -> Scene | None:
    """The scene a world clip shows, as far as the analyser can read it (None when it reads no
    object, or an object's shape is unclear: e.g. real footage). Positions are left at the
    centre: edits use this to resolve which object an instruction names, not where it is."""
    try:
        a = analyse(frames)
    except ValueError:
        return None
    objs = [o for o in a.objects if o.shape != UNCLEAR and o.motion in MOTIONS]
    if not objs or len(objs) != len(a.objects):
        return None
    return Scene(a.background, tuple(ShapeObject(o.color, o.shape, o.motion) for o in objs))
