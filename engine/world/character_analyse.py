"""Read a character clip (docs/world.md, Characters) back into the world's terms: background, shape,
the character's two colours, its pattern kind and its motion.

The background is the most common palette colour. The character's colours are the pair of
palette colours whose segment best explains its inner pixels (every pixel inside a character is
its fill, its pattern colour, or a blend of the two), so blends that land near a third palette
colour (red + yellow looks orange) do not count as a colour; a second colour that explains almost
nothing is dropped (a plain object has one colour). The character itself is every pixel that is
at least half covered, each pixel explained as a mix of the background and the two colours; its
shape is analyse's template fit of that union, voted over the frames where it is largest (a blend
of the two colours that looks like the background, red + cyan on gray, is inside: the union's
holes are filled). The pattern is read on those frames from the map "how much of the second
colour" over the character's inner pixels: each of the five pattern templates (the renderer's own
`pattern_second`, anchored at the measured centre and size, nudged by sub-pixel shifts and small
scales) predicts that map, and the one that correlates best wins, either colour being the
pattern's. It must also keep enough of the pattern's contrast: a plain object, a uniform mix of
the two colours (what a bad autoencoder returns) or a pattern blurred away is "unclear".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .analyse import MAX_COLOR_DISTANCE, MIN_PIXELS, MIN_SHAPE_FIT, UNCLEAR, _classify_shape, _erode, _motion
from .characters import Character, other_background, sample_character, sample_character_scene
from .palette import COLOR_NAMES, PALETTE, PATTERNS, SHAPES, nearest_color_index
from .render import pattern_second, render
from .scene import Pattern

# A second colour must be the nearer one on at least this share of the character's inner pixels
# (dots cover 28% of it; anti-aliased blends alone stay far below).
MIN_SECOND_SHARE = 0.04
# A pattern is read when its template correlates with the measured map at least this well...
MIN_PATTERN_CORR = 0.6
# ...and keeps at least this much of its contrast (see _read_pattern). Clean renders: >= 0.95 and
# >= 0.85. A Gaussian blur of 1 px keeps about 0.55 of the dots' contrast and 0.8 of the stripes';
# of 2 px, 0.2 to 0.35 of the dots' and checks' (unclear) and 0.4 to 0.6 of the stripes' (still
# visibly striped: read). A plain object, or a uniform mix of the two colours, has none.
MIN_PATTERN_CONTRAST = 0.4
# What is not background must be nearly all one blob for a single character to be found.
MIN_MAIN_SHARE = 0.9
VOTE_FRAMES = 3  # shape and pattern are voted over this many of the frames where it is largest
# ...but one frame decides the shape when it fits this well (clean renders fit at 0.8 to 1).
SURE_SHAPE_FIT = 0.9
SUB = 2  # sub-samples per pixel side for the pattern templates
PATTERN_SCALES = (0.94, 1.0, 1.06)
PATTERN_SHIFTS = (-0.5, 0.0, 0.5)  # in pixels
# Star: its bounding box is 0.951 r wide on each side, from r above the centre to 0.809 r below.
STAR_HALF_WIDTH, STAR_BOX_DROP = 0.951, (1 - 0.809) / 2


@dataclass
class CharacterReading:
    background: str
    shape: str  # one of SHAPES or "unclear"
    colors: tuple[str, ...]  # the colours found inside the character, most frequent first
    pattern: str  # one of PATTERNS or "unclear"
    motion: str  # one of MOTIONS
    centres: np.ndarray  # (T, 2) x, y of the bounding box centre; NaN where not visible
    sizes: np.ndarray  # (T,) half side of the bounding box
    found: bool  # False when no single character could be read (the rest is then best effort)
    shape_fit: float = 0.0  # mean IoU of the voting frames with the chosen shape's template
    pattern_fit: float = 0.0  # correlation of the chosen pattern's template with the measured map
    pattern_contrast: float = 0.0  # how much of the pattern's contrast is left (1: crisp; see _read_pattern)


def _segment_fit(pix: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel (N, 3) as a point of the segment a -> b: (position t in [0, 1], distance)."""
    d = b - a
    t = np.clip(((pix - a) @ d) / max(float(d @ d), 1e-6), 0.0, 1.0)
    return t, np.linalg.norm(pix - (a + t[:, None] * d), axis=-1)


def _pick_colours(pix: np.ndarray, labels: np.ndarray, bg: int) -> list[int]:
    """The one or two palette colours (most frequent first) that best explain the inner pixels
    (N, 3) of a character as blends of two colours."""
    counts = np.bincount(labels, minlength=len(COLOR_NAMES))
    counts[bg] = 0
    cands = [int(c) for c in np.argsort(-counts)[:5] if counts[c] > 0]
    if not cands:
        return []
    best, best_cost, best_t = [cands[0]], np.inf, None
    for i, c1 in enumerate(cands):
        for c2 in cands[i + 1 :]:
            t, dist = _segment_fit(pix, PALETTE[c1], PALETTE[c2])
            cost = float(np.minimum(dist, MAX_COLOR_DISTANCE).sum())
            if cost < best_cost:
                best, best_cost, best_t = [c1, c2], cost, t
    if best_t is None:
        return best
    share2 = float((best_t > 0.5).mean())
    if min(share2, 1 - share2) < MIN_SECOND_SHARE:
        return [best[0] if share2 < 0.5 else best[1]]
    return best if share2 <= 0.5 else best[::-1]


def _coverage(frames: np.ndarray, bg: int, colours: list[int]) -> np.ndarray:
    """(T, H, W) bool: the pixels the character covers at least half of, each pixel explained as
    background + a1 (colour 1 - background) + a2 (colour 2 - background), a1, a2 >= 0."""
    p = frames.astype(np.float32) - PALETTE[bg]
    ds = [PALETTE[c] - PALETTE[bg] for c in colours]
    # One colour at a time (the projection on the background -> colour segment)...
    alphas = np.stack([np.clip((p @ d) / (d @ d), 0.0, 1.0) for d in ds])
    resid = np.stack([np.linalg.norm(p - a[..., None] * d, axis=-1) for a, d in zip(alphas, ds, strict=True)])
    res = resid.min(0)
    if len(ds) == 2 and float(ds[0] @ ds[1]) > 0:
        # Both colours on the same side of the background: of the explanations that fit (nearly)
        # as well as the best, the fuller one (gray on black may be white half covering it).
        cover = np.where(resid <= res + 10.0, alphas, 0.0).max(0)
    else:
        cover = np.take_along_axis(alphas, resid.argmin(0)[None], 0)[0]
    if len(ds) == 2:
        # ...or, where the two colours and the background are not (nearly) in line, both at once.
        m = np.stack(ds, 1)  # (3, 2)
        gram = m.T @ m
        if float(np.linalg.det(gram)) > 0.04 * float(np.prod(np.diag(gram))):
            a = p @ m @ np.linalg.inv(gram)  # (T, H, W, 2)
            both = (a >= 0).all(-1)
            cover = np.where(both, a.sum(-1), cover)
            res = np.where(both, np.linalg.norm(p - a @ m.T, axis=-1), res)
    # A blend of the two colours can look like the background (red + cyan is nearly gray): what
    # the character encloses is the character.
    return _fill_holes((cover >= 0.5) & (res < MAX_COLOR_DISTANCE))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Per frame of (T, H, W): fill what the mask encloses."""
    return np.stack([ndimage.binary_fill_holes(m) for m in mask])


def _boxes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[int, int, int, int]]]:
    T, R = mask.shape[0], mask.shape[1]
    centres, sizes, boxes = np.full((T, 2), np.nan), np.full(T, np.nan), {}
    for f in range(T):
        ys, xs = np.nonzero(mask[f])
        if len(xs) == 0:
            continue
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        boxes[f] = box
        centres[f] = ((box[0] + box[2] + 1) / 2 / R, (box[1] + box[3] + 1) / 2 / R)
        sizes[f] = max(box[2] - box[0] + 1, box[3] - box[1] + 1) / 2 / R
    return centres, sizes, boxes


def _geometry(shape: str, box: tuple[int, int, int, int], R: int) -> tuple[float, float, float]:
    """The character's centre and r (normalised) from its bounding box, given its shape."""
    x0, y0, x1, y1 = box
    bx, by = (x0 + x1 + 1) / 2 / R, (y0 + y1 + 1) / 2 / R
    w, h = (x1 - x0 + 1) / 2 / R, (y1 - y0 + 1) / 2 / R
    if shape == "star":
        r = (w / STAR_HALF_WIDTH + h / (1 - STAR_BOX_DROP)) / 2
        return bx, by + STAR_BOX_DROP * r, r
    if shape == "circle" or shape == "square":
        return bx, by, (w + h) / 2
    return bx, by, max(w, h)


def _template_shares(ys: np.ndarray, xs: np.ndarray, R: int, cx: float, cy: float, r: float) -> np.ndarray:
    """(P, K, N): per pattern, per (shift, scale) candidate, the share of each pixel (ys, xs) that
    shows the pattern's second colour."""
    o = (np.arange(SUB) + 0.5) / SUB
    sx = ((xs[:, None] + o) / R)[:, None, :]  # (N, 1, S) sub-sample centres
    sy = ((ys[:, None] + o) / R)[:, :, None]  # (N, S, 1)
    shifts = np.array(PATTERN_SHIFTS) / R
    scales = np.array(PATTERN_SCALES)
    # Candidates: (dx, dy, scale); coordinates in units of the pattern period p = period * r.
    dx, dy, sc = np.meshgrid(shifts, shifts, scales, indexing="ij")
    dx, dy, sc = dx.ravel(), dy.ravel(), sc.ravel()
    unit = Pattern("hstripes", "red").period * r * sc  # (K,)
    u = (sx[None] - (cx + dx)[:, None, None, None]) / unit[:, None, None, None]  # (K, N, 1, S)
    v = (sy[None] - (cy + dy)[:, None, None, None]) / unit[:, None, None, None]  # (K, N, S, 1)
    u, v = np.broadcast_arrays(u, v)
    out = []
    for kind in PATTERNS:
        second = pattern_second(Pattern(kind, "red"), u, v, 0.0, 0.0, 1.0 / Pattern(kind, "red").period)
        out.append(second.mean((-2, -1)))
    return np.stack(out)  # (P, K, N)


def _read_pattern(
    frames: np.ndarray, inner: np.ndarray, colours: list[int], shape: str, boxes: dict, best: list[int]
) -> tuple[str, float, float]:
    """The pattern kind whose template best predicts, on the voting frames, how much of the second
    colour each inner pixel shows: (kind or "unclear", correlation, contrast). The contrast is the
    slope of the measured map on the template's: 1 for a crisp pattern, lower as blur washes it
    out, 0 for a uniform mix of the two colours."""
    if len(colours) < 2:
        return UNCLEAR, 0.0, 0.0
    R = frames.shape[1]
    a, b = PALETTE[colours[0]], PALETTE[colours[1]]
    corr, slope, n = np.zeros(len(PATTERNS)), np.zeros(len(PATTERNS)), 0
    for f in best:
        ys, xs = np.nonzero(inner[f])
        if len(xs) < 8:
            continue
        t, _ = _segment_fit(frames[f, ys, xs].astype(np.float32), a, b)
        cx, cy, r = _geometry(shape if shape in SHAPES else "square", boxes[f], R)
        s = _template_shares(ys, xs, R, cx, cy, r)  # (P, K, N)
        s = s - s.mean(-1, keepdims=True)
        t = t - t.mean()
        # Either colour may be the pattern's (a stripe of one is a shifted stripe of the other):
        # the sign of the covariance does not count.
        cov = np.abs((s * t).mean(-1))
        var = (s * s).mean(-1)
        c = cov / np.sqrt(var * (t * t).mean() + 1e-9)  # (P, K)
        k = c.argmax(-1)
        rows = np.arange(len(PATTERNS))
        corr += c[rows, k]
        slope += cov[rows, k] / (var[rows, k] + 1e-9)
        n += 1
    if n == 0:
        return UNCLEAR, 0.0, 0.0
    k = int(corr.argmax())
    c, contrast = float(corr[k] / n), float(slope[k] / n)
    ok = c >= MIN_PATTERN_CORR and contrast >= MIN_PATTERN_CONTRAST
    return (PATTERNS[k] if ok else UNCLEAR), c, contrast


def _main_component(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """The largest blob of an (H, W) mask (pieces less than a pixel apart count as one: stripes
    split by a blend that looks like the background) and its share of the mask's pixels."""
    lab, n = ndimage.label(ndimage.binary_dilation(mask), structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask, 1.0
    counts = np.bincount(lab[mask], minlength=n + 1)
    k = int(counts.argmax())
    return mask & (lab == k), float(counts[k] / max(counts.sum(), 1))


def analyse_character(frames: np.ndarray) -> CharacterReading:
    """frames (T, H, W, 3) uint8 (T = 1, or (H, W, 3), for an image) -> CharacterReading."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    T, R = frames.shape[0], frames.shape[1]
    labels, dist = nearest_color_index(frames)
    counts = np.bincount(labels[dist < MAX_COLOR_DISTANCE].ravel(), minlength=len(COLOR_NAMES))
    bg = int(counts.argmax())
    rough = _erode(_fill_holes(labels != bg))
    colours = _pick_colours(frames[rough].astype(np.float32), labels[rough], bg) if rough.any() else []
    if not colours:
        nan = np.full((T, 2), np.nan)
        return CharacterReading(COLOR_NAMES[bg], UNCLEAR, (), UNCLEAR, "still", nan, np.full(T, np.nan), False)
    mask = _coverage(frames, bg, colours)
    # Specks away from the character (noise in a generated clip) must not stretch its box.
    shares = np.ones(T)
    for f in range(T):
        if mask[f].any():
            mask[f], shares[f] = _main_component(mask[f])
    centres, sizes, boxes = _boxes(mask)
    area = mask.sum((1, 2))
    present = _erode(mask).sum((1, 2)) / (R * R) >= MIN_PIXELS
    best = sorted(boxes, key=lambda f: -area[f])[:VOTE_FRAMES]
    votes: dict[str, list[float]] = {}
    for f in best:
        shape, iou = _classify_shape(mask[f], R)
        votes.setdefault(shape, []).append(iou)
        if len(votes) == 1 and iou >= SURE_SHAPE_FIT:
            break  # a clean fit on the largest frame: more votes would only cost time
    shape = max(votes, key=lambda k: sum(votes[k])) if votes else UNCLEAR
    shape_fit = float(np.mean(votes[shape])) if votes else 0.0
    if shape_fit < MIN_SHAPE_FIT:
        shape = UNCLEAR
    pattern, pattern_fit, contrast = _read_pattern(frames, _erode(mask), colours, shape, boxes, best)
    # One character, there in most frames, that is nearly all of what is not background.
    found = bool(present.mean() >= 0.5 and shares[area > 0].mean() >= MIN_MAIN_SHARE)
    return CharacterReading(
        COLOR_NAMES[bg],
        shape,
        tuple(COLOR_NAMES[c] for c in colours),
        pattern,
        _motion(centres, sizes),
        centres,
        sizes,
        found,
        shape_fit,
        pattern_fit,
        contrast,
    )


@dataclass
class CharacterScore:
    shape: bool
    colors: bool
    pattern: bool
    motion: bool
    background: bool

    @property
    def identity(self) -> bool:
        """The character itself: shape, both colours (as a set) and pattern kind."""
        return self.shape and self.colors and self.pattern

    @property
    def prompt(self) -> bool:
        """What the prompt asked of it: motion and background."""
        return self.motion and self.background

    @property
    def both(self) -> bool:
        return self.identity and self.prompt


def score_character(
    reading: CharacterReading, ch: Character, motion: str, background: str, image: bool = False
) -> CharacterScore:
    """Compare a reading with the character and the prompt (for an image, motion is not asked).
    A clip where no single character was found matches no field of the character."""
    found = reading.found
    return CharacterScore(
        shape=found and reading.shape == ch.shape,
        colors=found and len(reading.colors) == 2 and set(reading.colors) == {ch.color, ch.color2},
        pattern=found and reading.pattern == ch.pattern,
        motion=found and (image or reading.motion == motion),
        background=reading.background == background,
    )


FIELDS = ("shape", "colors", "pattern", "motion", "background", "identity", "prompt", "both")


def analyser_accuracy(
    n: int = 200, seed: int = 0, held_out: bool | None = True, kind: str = "clip", frames: int = 32
) -> dict[str, float]:
    """Share of n random rendered truths read right, per field and for identity / prompt / both.

    kind "clip": 64x64, `frames` frames (32: the base clip), random character (held-out ones by
    default), motion and background, as docs/world.md draws them, rendered clean (no JPEG or H.264);
    "image": one frame of a still character (r = 0.21); "reference": the character's reference
    image (r = 0.3, centred)."""
    assert kind in ("clip", "image", "reference"), kind
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(FIELDS, 0)
    for _ in range(n):
        ch = sample_character(rng, held_out=held_out)
        if kind == "reference":
            motion, background = "still", other_background(rng, ch)
            clip = ch.reference(background, 64)[None]
        else:
            scene = sample_character_scene(rng, ch, motion="still" if kind == "image" else None)
            motion, background = scene.objects[0].motion, scene.background
            clip = render(scene, 64, frames if kind == "clip" else 1)
        sc = score_character(analyse_character(clip), ch, motion, background, image=kind != "clip")
        for k in FIELDS:
            hits[k] += bool(getattr(sc, k))
    return {k: v / max(n, 1) for k, v in hits.items()}
