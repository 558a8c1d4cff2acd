"""Read a clip back into the world's terms: background colour and objects (colour, shape,
centre and size per frame, motion). Every quality figure of the project is measured with it.

Which colours are present is decided on pixels labelled with their nearest palette colour, with
anti-aliased blends (far from every palette entry) dropped and a 1-pixel erosion removing thin
rings of blends that land near a third colour. Each object's shape and position are then read
from its coverage: every pixel as a mix of background and object colour, counted where the object
covers at least half of it, so soft or blurred edges do not eat thin parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .palette import COLOR_NAMES, DIRECTIONS, PALETTE, SHAPES, nearest_color_index
from .render import clip_times, shape_mask
from .scene import Scene

MAX_COLOR_DISTANCE = 60.0  # in 0..255 RGB units
MIN_PIXELS = 0.0015  # of the frame, after erosion (~6 px at 64x64)
MOVE_THRESHOLD = 0.2  # of the canvas, over the clip (true moves travel 0.5)
GROW_THRESHOLD = 0.06  # change of r over the clip (true growth is 0.14)


@dataclass
class ObjectTrack:
    color: str
    shape: str
    motion: str
    centres: np.ndarray  # (T, 2) x, y; NaN where not visible
    sizes: np.ndarray  # (T,) half side of the bounding box
    area: float = 0.0  # mean fraction of the frame


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


def _classify_shape(mask: np.ndarray, box: tuple[float, float, float, float], R: int) -> tuple[str, float]:
    """Best-matching shape (by IoU) for a mask whose bounding box is (x0, y0, x1, y1) in pixels."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1 + 1) / 2 / R, (y0 + y1 + 1) / 2 / R
    r = max(x1 - x0 + 1, y1 - y0 + 1) / 2 / R
    ys, xs = (np.mgrid[0:R, 0:R] + 0.5) / R
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        if shape == "star":  # a star's outer radius is r but its box is 0.95 r wide, 0.9 r tall
            tmpl = shape_mask(shape, xs, ys, cx, cy + 0.05 * r, r / 0.95)
        else:
            tmpl = shape_mask(shape, xs, ys, cx, cy, r)
        iou = (tmpl & mask).sum() / max((tmpl | mask).sum(), 1)
        if iou > best_iou:
            best, best_iou = shape, float(iou)
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
        votes: dict[str, float] = {}
        for f in best:
            shape, iou = _classify_shape(mask[f], boxes[f], R)
            votes[shape] = votes.get(shape, 0.0) + iou
        shape = max(votes, key=votes.get) if votes else SHAPES[0]
        objects.append(ObjectTrack(COLOR_NAMES[c], shape, _motion(centres, sizes), centres, sizes, area))
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
